"""Does the viewer stay responsive? napari's event loop measured with a 10 ms timer while the
widgets segment, train, place the rating slices and count.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/event_loop.py --data ../shared/data \
        [--scan open_ms/longitudinal/patient01/study1_T2W.nii.gz] [--slices 60] [--steps 20]

A ``QTimer`` fires every 10 ms on the main thread; a stall is how much later than 10 ms each
tick came (the time the event loop could not run: the viewer froze). For each phase, run from
the widget as a user would (the job runner, its result shown in the viewer), it prints the
ticks, the 99th percentile and the longest stall, and when the longest happened (seconds
before or after the job's result arrived). Targets: p99 under 50 ms, longest under 200 ms.

Phases: *segment* (Segment PVS, the shipped default model, its result layers added),
*train* (Train PVS model, a small U-Net for ``--steps`` steps on the scan and the mask just
made), *place slices* (Count: atlas registration in the job runner, the regions layer
added), *count* (Count: the Count button on the mask), and *napari add labels / image* (napari
alone adding one layer of the scan's grid: the floor of any result's arrival, whatever the
plugin does; results are shown one layer per event-loop turn).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Ticker:
    """A 10 ms QTimer recording when each tick arrives.

    With ``trace_ms``, a watchdog thread prints the Python stack of every thread once per stall
    longer than that (the main thread's stack says what froze it when it was busy; when a worker
    held the GIL in a C call, the watchdog itself wakes late, next to the culprit line)."""

    def __init__(self, interval_ms: int = 10, trace_ms: float = 0.0):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.trace_s = trace_ms / 1000.0
        self._watching = False
        self.gc_pauses: list[tuple[int, float]] = []    # (generation, ms) of Python's collections
        self._gc_t0 = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_pauses.append((int(info["generation"]), (time.perf_counter() - self._gc_t0) * 1000))

    def start(self):
        import gc

        self.ticks = [time.perf_counter()]
        self.gc_pauses = []
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self.timer.start()
        if self.trace_s and not self._watching:
            import threading

            self._watching = True
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        import threading
        import traceback

        reported = None
        main = threading.main_thread().ident
        while self._watching:
            time.sleep(0.02)
            last = self.ticks[-1] if self.ticks else None
            try:
                active = self.timer.isActive()
            except RuntimeError:           # the viewer (and the timer) closed
                return
            if last is None or not active:
                continue
            late = time.perf_counter() - last
            if late > self.trace_s and reported != last:
                reported = last
                names = {t.ident: t.name for t in threading.enumerate()}
                print(f"--- stall of {late * 1000:.0f} ms so far; stacks:", flush=True)
                for ident, frame in sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    tag = "MAIN" if ident == main else names.get(ident, ident)
                    stack = traceback.extract_stack(frame)[-6:]
                    print(f"  [{tag}] " + " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                                                     for f in reversed(stack)), flush=True)

    def stop(self) -> np.ndarray:
        import gc

        self.timer.stop()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        t = np.asarray(self.ticks)
        return t


def wait(predicate, timeout_s: float) -> float:
    """Run the Qt event loop (not processEvents: the real loop) until ``predicate()``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    t0 = time.perf_counter()
    check = QTimer()
    check.setInterval(20)
    check.timeout.connect(lambda: loop.quit() if predicate() or time.perf_counter() - t0 > timeout_s else None)
    check.start()
    loop.exec()
    check.stop()
    return time.perf_counter() - t0


def stalls(ticks: np.ndarray, interval: float, result_at: float | None) -> dict:
    gaps = np.diff(ticks) - interval
    gaps = np.clip(gaps, 0, None)
    i = int(np.argmax(gaps)) if gaps.size else 0
    return {"ticks": int(gaps.size), "p99_ms": round(float(np.percentile(gaps, 99)) * 1000, 1) if gaps.size else 0.0,
            "max_ms": round(float(gaps.max()) * 1000, 1) if gaps.size else 0.0,
            "max_at_s_from_result": None if result_at is None or not gaps.size
            else round(float(ticks[i + 1] - result_at), 2),
            "over_200ms": int((gaps > 0.2).sum()), "over_50ms": int((gaps > 0.05).sum()),
            "top5": [(round(float(gaps[k]) * 1000), None if result_at is None else round(float(ticks[k + 1] - result_at), 2))
                     for k in np.argsort(gaps)[::-1][:5]] if gaps.size else []}


def gc_stats(pauses: list[tuple[int, float]]) -> dict:
    """The full (generation 2) collections of Python's garbage collector during a phase: how
    many, and the longest (each holds the GIL: the viewer cannot run meanwhile)."""
    full = [ms for gen, ms in pauses if gen == 2]
    return {"full_gc": len(full), "full_gc_longest_ms": round(max(full), 1) if full else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scan", default="open_ms/longitudinal/patient01/study1_T2W.nii.gz")
    ap.add_argument("--slices", type=int, default=0, help="keep this many axial slices around the middle (0: all)")
    ap.add_argument("--steps", type=int, default=20, help="training steps")
    ap.add_argument("--phases", default="segment,train,place,count,napari",
                    help="'napari': napari alone adding one Labels and one Image layer of the scan's grid (the "
                         "floor of a result's arrival, whatever the plugin does)")
    ap.add_argument("--cold", action="store_true",
                    help="do not import torch and MONAI before measuring (the first job of a session then pays "
                         "for their import)")
    ap.add_argument("--no-gc-hold", action="store_true",
                    help="let Python's full garbage collections run during jobs (napari_pvs.plugin.gc_hold off), "
                         "to compare")
    ap.add_argument("--trace-stalls", type=float, default=0.0, metavar="MS",
                    help="print every thread's Python stack during each stall longer than MS (diagnosis)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "event_loop")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["NAPARI_PVS_DATA"] = str(args.data)
    if args.no_gc_hold:
        from napari_pvs.plugin import gc_hold

        gc_hold.hold = gc_hold.release = lambda owner: None
    import napari

    from napari_pvs.engine.io import load_volume
    from napari_pvs.plugin.layers import layer_geometry, volume_metadata

    if not args.cold:     # a session in which jobs have run before: torch, MONAI, ONNX Runtime imported
        import monai.networks.nets  # noqa: F401
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401

        import napari_pvs.engine.inference  # noqa: F401
        import napari_pvs.engine.training  # noqa: F401
    vol = load_volume(args.data / args.scan)
    if args.slices:        # a crop of the middle slices (same geometry: the origin moves to the first kept slice)
        import dataclasses

        ax = vol.axial_axis
        lo = max(0, vol.shape[ax] // 2 - args.slices // 2)
        idx = [slice(None)] * 3
        idx[ax] = slice(lo, lo + args.slices)
        aff = vol.affine.copy()
        aff[:3, 3] = vol.voxel_to_world(np.array([lo if a == ax else 0 for a in range(3)], float))
        vol = dataclasses.replace(vol, data=np.ascontiguousarray(vol.data[tuple(idx)]), affine=aff)
    viewer = napari.Viewer(title="napari-pvs: event loop")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.window.show()
    t2 = viewer.add_image(vol.data, name="T2", colormap="gray", metadata=volume_metadata(vol), **layer_geometry(vol))
    wait(lambda: False, 1.0)
    ticker = Ticker(trace_ms=args.trace_stalls)
    phases = [p.strip() for p in args.phases.split(",")]
    results: dict = {"scan": args.scan, "shape": list(vol.shape), "voxel_size_mm": list(vol.voxel_size),
                     "cold": bool(args.cold), "gc_hold": not args.no_gc_hold}
    print(f"{args.scan}: {vol.shape} voxels of {tuple(round(v, 2) for v in vol.voxel_size)} mm")

    def run_job(name, panel, start, timeout_s=3600):
        wait(lambda: False, 1.5)     # the dock just opened (scale bar turned on, first text drawn): let it settle
        got = {}
        panel.runner.returned.connect(lambda *_: got.setdefault("t", time.perf_counter()))
        ticker.start()
        t0 = time.perf_counter()
        assert start(), f"{name} did not start: {panel.status.text()}"
        start_ms = (time.perf_counter() - t0) * 1000     # prepare() on the main thread: the form read and checked
        wait(lambda: panel.worker is None, timeout_s)
        wait(lambda: False, 1.0)                     # one more second: what follows the result
        ticks = ticker.stop()
        res = stalls(ticks, ticker.interval, got.get("t"))
        res.update(gc_stats(ticker.gc_pauses))
        res["job_s"] = round((got.get("t") or time.perf_counter()) - t0, 1)
        res["start_ms"] = round(start_ms, 1)
        results[name] = res
        print(f"{name}: {res}", flush=True)

    mask_layer = None
    if "segment" in phases:
        _, seg = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
        seg.image.value = t2
        run_job("segment", seg.job, seg.start)
        mask_layer = seg.mask_layer
    if "train" in phases:
        if mask_layer is None:
            mask_layer = viewer.add_labels((vol.data > np.percentile(vol.data, 99.5)).astype(np.uint8), name="mask",
                                           metadata=volume_metadata(vol), **layer_geometry(vol))
        _, tr = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
        tr.pairs[0].image.value = t2
        tr.pairs[0].labels.value = mask_layer
        tr.model.value = "unet"
        tr.features.value = "8, 16, 32"
        tr.patch_size.value = 64
        tr.batch_size.value = 2
        tr.epochs.value = 1
        tr.steps_per_epoch.value = args.steps
        tr.device.value = "cpu"
        tr.checkpoint_path = args.out / "event_loop_unet.pt"
        run_job("train", tr.job, tr.start)
    if "place" in phases or "count" in phases:
        _, cw = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
        if mask_layer is not None:
            cw.labels.value = mask_layer
        cw.place_image.value = t2
        if "place" in phases:
            run_job("place slices", cw.place, cw.place.start)
        if "count" in phases and mask_layer is not None:
            wait(lambda: False, 1.0)
            ticker.start()
            t0 = time.perf_counter()
            from qtpy.QtCore import QTimer

            QTimer.singleShot(100, cw.count_button.click)
            wait(lambda: cw.last_counts is not None, 120)
            done = time.perf_counter()
            wait(lambda: False, 1.0)
            res = stalls(ticker.stop(), ticker.interval, done)
            res.update(gc_stats(ticker.gc_pauses))
            res["job_s"] = round(done - t0 - 0.1, 2)
            results["count"] = res
            print(f"count: {res}", flush=True)
    if "napari" in phases:      # the floor: napari alone adding one Labels and one Image layer of this grid
        from qtpy.QtCore import QTimer

        for kind in ("labels", "image"):
            wait(lambda: False, 1.0)
            ticker.start()
            t0 = time.perf_counter()
            data = (vol.data > 0).astype(np.uint8) if kind == "labels" else vol.data.astype(np.float32)
            add = viewer.add_labels if kind == "labels" else viewer.add_image
            QTimer.singleShot(100, lambda a=add, d=data, k=kind: a(d, name=f"napari alone: {k}",
                                                                   **layer_geometry(vol)))
            wait(lambda k=kind: f"napari alone: {k}" in viewer.layers, 30)
            done = time.perf_counter()
            wait(lambda: False, 1.0)
            res = stalls(ticker.stop(), ticker.interval, done)
            res.update(gc_stats(ticker.gc_pauses))
            res["job_s"] = round(done - t0 - 0.1, 2)
            results[f"napari add {kind}"] = res
            print(f"napari add {kind}: {res}", flush=True)
    print("\n| phase | job s | ticks | p99 stall ms | longest ms | longest at (s from result) | > 50 ms | > 200 ms "
          "| full GCs (longest ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("segment", "train", "place slices", "count", "napari add labels", "napari add image"):
        if name in results:
            r = results[name]
            print(f"| {name} | {r['job_s']} | {r['ticks']} | {r['p99_ms']} | {r['max_ms']} | "
                  f"{r['max_at_s_from_result']} | {r['over_50ms']} | {r['over_200ms']} | "
                  f"{r['full_gc']} ({r['full_gc_longest_ms']}) |")
    (args.out / "event_loop.json").write_text(json.dumps(results, indent=1))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
