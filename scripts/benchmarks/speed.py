"""
Speed and memory of inference and training, against peer pipelines measured in the same run, interleaved.

    python -m scripts.benchmarks.speed                 # about 10 minutes on a 2-core CPU
    python -m scripts.benchmarks.speed --repeats 5 --swin True

Inference, on ``../shared/data/real_ct/ircad_1.1`` (512 x 512 x 129 DICOM; a phantom of that size when the folder
is absent):

- **whole process** of the real command ``python -m monai.bundle run --config_file configs/inference.yaml`` and of
  each peer (``scripts.benchmarks.pipelines``: ``spleen_ct_segmentation`` and, with ``--swin``,
  ``swin_unetr_btcv_segmentation`` settings, random weights), wall seconds and peak RSS, ``repeats`` times in
  turn; the **start-up floor** (a process that imports monai and exits) in the same rounds; **case time** = whole
  process minus that floor; ours/peer ratios paired round by round; medians.
- **stages** of each pipeline (read, preprocess, sliding window, inversion, post-processing, writing, overlay)
  from ``scripts.benchmarks.pipelines`` in a process of its own, and the bundle's own start-up beyond
  ``import monai`` (config parsing, network, weights).
- a **batch of 10** copies of the case in one run, ours against the spleen-style peer;
- a **512 x 512 x 600** volume (a phantom case resampled to that grid), ours: case time and peak RSS.

Training: median seconds per iteration of the baseline and the shipped DualSSL recipe on the same patches
(``scripts.benchmarks.iteration``), and, when a generalisation benchmark has run (``--generalization_dir``), each
variant's training time to the baseline's converged source-validation Dice.

Prints a table and writes every number to ``--output_json`` (default ``docs/speed.json``) and ``docs/speed.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scripts.bundle import BUNDLE_ROOT, run_command_line
from scripts.evaluation.real_ct import REAL_CASES, REAL_CT_DIR

__all__ = ["measure_process", "main"]

# config files over configs/train.yaml that models/model.pt was trained with (docs/README.md, Training)
SHIPPED_RECIPE = ("bigaug.yaml", "dualssl_stages.yaml")
IRCAD = REAL_CT_DIR / REAL_CASES["ircad_1.1"].image


def measure_process(args: list[str], cwd: Path = BUNDLE_ROOT) -> dict:
    """
    Run ``args``; wall seconds and peak resident memory (MB) of the process, and ``stdout`` (its last line).

    The peak comes from GNU ``time`` (``/usr/bin/time -f %M``), whose child is forked from that small program: a
    child forked from this Python process would report at least this process' own peak (Linux keeps the
    high-water mark of the forked copy across ``exec``). Without ``/usr/bin/time`` it is ``os.wait4``'s, an upper
    bound.

    Raises:
        RuntimeError: a non-zero exit, with the end of its standard error.
    """
    gnu_time = Path("/usr/bin/time")
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        command = [str(gnu_time), "-f", "%M", "-o", str(rss_file), *args] if gnu_time.is_file() else list(args)
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            env = dict(os.environ, BENCHMARK_LAUNCH=repr(time.time()))
            start = time.perf_counter()
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read().decode(errors="replace")
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:6])} failed ({process.returncode}):\n{stderr[-3000:]}")
        peak_kb = float(rss_file.read_text().split()[-1]) if rss_file.is_file() else usage.ru_maxrss
    lines = stdout.decode(errors="replace").strip().splitlines()
    return {"wall_s": wall, "peak_rss_mb": peak_kb / 1024, "stdout": lines[-1] if lines else ""}


def _bundle_command(dataset: str, output_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml",
        "--meta_file", "configs/metadata.json", "--dataset_dir", dataset, "--output_dir", str(output_dir),
    ]


def _pipeline_command(name: str, inputs: list[str], output_dir: Path, timings: Path) -> list[str]:
    return [
        sys.executable, "-m", "scripts.benchmarks.pipelines", name, "--inputs", json.dumps(inputs),
        "--output_dir", str(output_dir), "--timings_file", str(timings),
    ]


def _resampled_phantom(path: Path, shape: tuple[int, int, int]) -> Path:
    """A phantom case resampled (trilinear) to ``shape`` over the same field of view, int16 NIfTI."""
    if path.is_file():
        return path
    import nibabel as nib
    import torch

    from scripts.phantom import generate_case

    case = generate_case("source", seed=7)
    image = torch.as_tensor(case.image, dtype=torch.float32)[None, None]
    resampled = torch.nn.functional.interpolate(image, size=shape, mode="trilinear", align_corners=False)[0, 0]
    affine = case.affine.copy()
    affine[:3, :3] = affine[:3, :3] * (np.array(case.image.shape) / np.array(shape))[None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(resampled.round().numpy().astype(np.int16), affine), str(path))
    return path


def _batch_folder(case: str, folder: Path, copies: int) -> tuple[Path, list[str]]:
    """``copies`` links to the same case in one folder (one sub-folder per DICOM series, or one file each)."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for index in range(copies):
        link = folder / (f"case_{index:02d}" + ("" if os.path.isdir(case) else "".join(Path(case).suffixes)))
        if not link.exists():
            link.symlink_to(case)
        inputs.append(str(link))
    return folder, inputs


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _time_to_accuracy(generalization_dir: Path, profile: str = "cpu", tolerance: float = 0.01) -> dict | None:
    """
    Per variant: median seconds of training until its source-validation Dice first comes within ``tolerance`` of the
    baseline's final one (median over the baseline's seeds), from the generalisation benchmark's curves.
    """
    runs = generalization_dir / "runs" / profile
    if not runs.is_dir():
        return None
    scores = {p.name: json.loads((p / "scores.json").read_text()) for p in runs.iterdir() if (p / "scores.json").is_file()}
    baseline_final = [
        s["validation_curve"][-1]["val_mean_dice"] for n, s in scores.items() if n.startswith("baseline_seed")
    ]
    if not baseline_final:
        return None
    target = float(np.median(baseline_final))
    result: dict = {"target_val_dice": target, "tolerance": tolerance, "variants": {}}
    for name, run in scores.items():
        variant = name.rsplit("_seed", 1)[0]
        curve = run["validation_curve"]
        iterations = curve[-1]["iteration"]
        reached = next((e["iteration"] for e in curve if e["val_mean_dice"] >= target - tolerance), None)
        seconds = None if reached is None else run["train_seconds"] * reached / iterations
        result["variants"].setdefault(variant, []).append(seconds)
    for variant, values in result["variants"].items():
        reached = [v for v in values if v is not None]
        result["variants"][variant] = {
            "median_s": _median(reached) if len(reached) * 2 > len(values) else None,
            "runs_reaching": f"{len(reached)}/{len(values)}",
        }
    return result


def main(
    repeats: int = 3,
    swin: bool = False,
    large: bool = True,
    batch_copies: int = 10,
    training: bool = True,
    work_dir: str = "runs/speed",
    output_json: str = "docs/speed.json",
    generalization_dir: str = "runs/generalization",
) -> dict:
    """Run the benchmark (see the module docs); returns every number."""
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if IRCAD.is_dir():
        case = str(IRCAD)
    else:
        case = str(_resampled_phantom(work / "phantom_512x512x129.nii.gz", (512, 512, 129)))
    peers = ["spleen"] + (["swin"] if swin else [])
    results: dict = {"case": case, "repeats": repeats, "rounds": []}
    # the floor: a process that imports monai and exits; it prints when the import was done (launch to import)
    startup_args = [
        sys.executable, "-c",
        "import os, time; import monai; print(time.time() - float(os.environ['BENCHMARK_LAUNCH']))",
    ]
    for round_index in range(repeats):  # interleaved: every pipeline once per round, same machine state
        row: dict = {"startup": measure_process(startup_args)}
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            row["bundle"] = measure_process(_bundle_command(case, Path(tmp) / "bundle"))
            for peer in peers:
                timings = Path(tmp) / f"{peer}.json"
                row[peer] = measure_process(_pipeline_command(peer, [case], Path(tmp) / peer, timings))
                row[peer]["stages"] = json.loads(timings.read_text())["cases"][0]
            timings = Path(tmp) / "bundle_stages.json"
            staged = measure_process(_pipeline_command("bundle", [case], Path(tmp) / "bundle_stages", timings))
            content = json.loads(timings.read_text())
            row["bundle"]["stages"] = content["cases"][0]
            row["bundle"]["startup_s"] = content["startup_s"]
            row["bundle"]["stages_process"] = staged
        results["rounds"].append(row)
        print(f"round {round_index + 1}/{repeats}: " + ", ".join(
            f"{k} {v['wall_s']:.1f} s" for k, v in row.items()), flush=True)
    summary = _summarise(results, peers)
    if batch_copies:
        folder, inputs = _batch_folder(case, work / "batch", batch_copies)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            summary["batch"] = {
                "cases": batch_copies,
                "bundle": measure_process(_bundle_command(str(folder), Path(tmp) / "bundle")),
                "spleen": measure_process(
                    _pipeline_command("spleen", inputs, Path(tmp) / "spleen", Path(tmp) / "spleen.json")
                ),
            }
        summary["batch"]["ratio_bundle_over_spleen"] = (
            summary["batch"]["bundle"]["wall_s"] / summary["batch"]["spleen"]["wall_s"]
        )
        print(f"batch of {batch_copies}: {json.dumps(summary['batch'])}", flush=True)
    if large:
        volume = _resampled_phantom(work / "phantom_512x512x600.nii.gz", (512, 512, 600))
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            startup = measure_process(startup_args)
            whole = measure_process(_bundle_command(str(volume), Path(tmp) / "bundle"))
            timings = Path(tmp) / "stages.json"
            measure_process(_pipeline_command("bundle", [str(volume)], Path(tmp) / "stages", timings))
            summary["large"] = {
                "shape": [512, 512, 600],
                "whole_s": whole["wall_s"],
                "case_s": whole["wall_s"] - startup["wall_s"],
                "peak_rss_mb": whole["peak_rss_mb"],
                "stages": json.loads(timings.read_text())["cases"][0],
            }
        print(f"512 x 512 x 600: {json.dumps(summary['large'])}", flush=True)
    if training:
        from scripts.benchmarks.iteration import measure_iterations

        summary["training"] = {
            "iteration": measure_iterations(iterations=10, warmup=2, batch=2, recipe=SHIPPED_RECIPE),
            "iteration_train_yaml": measure_iterations(iterations=10, warmup=2, batch=2),
            "shipped_recipe": list(SHIPPED_RECIPE),
        }
        summary["training"]["time_to_accuracy"] = _time_to_accuracy(Path(generalization_dir).resolve())
    summary["rounds"] = results["rounds"]
    summary["case"] = case
    output = Path(output_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=1))
    table = format_table(summary, peers)
    output.with_suffix(".md").write_text(table)
    print(table)
    shutil.rmtree(work / "batch", ignore_errors=True)
    return summary


def _summarise(results: dict, peers: list[str]) -> dict:
    rounds = results["rounds"]
    summary: dict = {"startup_s": _median([r["startup"]["wall_s"] for r in rounds]), "inference": {}}
    for name in ["bundle"] + peers:
        whole = [r[name]["wall_s"] for r in rounds]
        case = [r[name]["wall_s"] - r["startup"]["wall_s"] for r in rounds]
        stages = {k: _median([r[name]["stages"][k] for r in rounds]) for k in rounds[0][name]["stages"] if k != "input"}
        summary["inference"][name] = {
            "whole_s": _median(whole),
            "case_s": _median(case),
            "peak_rss_mb": _median([r[name]["peak_rss_mb"] for r in rounds]),
            "stages": stages,
        }
        if name != "bundle":
            summary["inference"][name]["ratio_case_bundle_over_peer"] = _median(
                [(r["bundle"]["wall_s"] - r["startup"]["wall_s"]) / (r[name]["wall_s"] - r["startup"]["wall_s"])
                 for r in rounds]
            )
            summary["inference"][name]["ratio_whole_bundle_over_peer"] = _median(
                [r["bundle"]["wall_s"] / r[name]["wall_s"] for r in rounds]
            )
    # launch to first case in the stage-timed process, minus launch to "import monai" done in the floor process
    summary["inference"]["bundle"]["own_startup_s"] = _median(
        [r["bundle"]["startup_s"] - float(r["startup"]["stdout"]) for r in rounds]
    )
    summary["import_monai_s"] = _median([float(r["startup"]["stdout"]) for r in rounds])
    return summary


def format_table(summary: dict, peers: list[str]) -> str:
    """The Markdown report of ``summary``."""
    inference = summary["inference"]
    stage_names = ["read", "preprocess", "sliding_window", "invert", "post", "write", "overlay"]
    lines = [
        "# Speed and memory",
        "",
        f"Case: `{summary['case']}`; medians of {len(summary['rounds'])} interleaved rounds; "
        f"start-up floor (a process that imports monai and exits): {summary['startup_s']:.1f} s, of which launch to "
        f"import done {summary['import_monai_s']:.1f} s; case time = whole process minus the floor.",
        "",
        "| pipeline | whole process s | case time s | peak RSS MB | " + " | ".join(stage_names) + " |",
        "|---" * (4 + len(stage_names)) + "|",
    ]
    for name in ["bundle"] + peers:
        row = inference[name]
        stages = [f"{row['stages'].get(s, float('nan')):.2f}" for s in stage_names]
        lines.append(
            f"| {name} | {row['whole_s']:.1f} | {row['case_s']:.1f} | {row['peak_rss_mb']:.0f} | "
            + " | ".join(stages)
            + " |"
        )
    lines.append("")
    for peer in peers:
        lines.append(
            f"- bundle / {peer}: case time {inference[peer]['ratio_case_bundle_over_peer']:.2f}x, whole process "
            f"{inference[peer]['ratio_whole_bundle_over_peer']:.2f}x (paired by round, median)."
        )
    lines.append(f"- the bundle's own start-up beyond `import monai` (config, network, weights): "
                 f"{inference['bundle']['own_startup_s']:.1f} s.")
    if "batch" in summary:
        batch = summary["batch"]
        lines.append(
            f"- batch of {batch['cases']} cases in one run: bundle {batch['bundle']['wall_s']:.1f} s, spleen-style peer "
            f"{batch['spleen']['wall_s']:.1f} s ({batch['ratio_bundle_over_spleen']:.2f}x)."
        )
    if "large" in summary:
        large = summary["large"]
        lines.append(
            f"- 512 x 512 x 600: whole process {large['whole_s']:.1f} s, case time {large['case_s']:.1f} s, "
            f"peak RSS {large['peak_rss_mb']:.0f} MB; stages " + ", ".join(
                f"{k} {v:.1f}" for k, v in large["stages"].items() if k != "input")
        )
    if "training" in summary:
        for key, name in (("iteration", "shipped recipe " + "+".join(summary["training"]["shipped_recipe"])),
                          ("iteration_train_yaml", "configs/train.yaml")):
            iteration = summary["training"][key]
            lines.append(
                f"- training iteration (batch {iteration['patch_batch'][0]} x {iteration['patch_batch'][2:]}): baseline "
                f"{1000 * iteration['baseline_s_per_iteration']:.0f} ms, DualSSL {name} "
                f"{1000 * iteration['dualssl_s_per_iteration']:.0f} ms ({iteration['time_ratio']:.2f}x)."
            )
        reach = summary["training"].get("time_to_accuracy")
        if reach:
            cells = ", ".join(
                f"{variant}: " + ("not reached" if r["median_s"] is None else f"{r['median_s']:.0f} s")
                + f" ({r['runs_reaching']})"
                for variant, r in reach["variants"].items()
            )
            lines.append(
                f"- training time until source-validation Dice is within {reach['tolerance']} of the baseline's final "
                f"{reach['target_val_dice']:.3f} (generalisation benchmark runs, 2 in parallel): {cells}."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_command_line(main, serialize=lambda result: None)  # the table is printed; the numbers are in output_json
