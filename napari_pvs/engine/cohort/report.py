"""``report.html``: a self-contained cohort report (every picture embedded; it opens in a
browser with no network): counts, grades, BG against CSO, counts by age and sex when the
BIDS ``participants.tsv`` gives them, the failed scans, and a QC gallery linking each scan's
figure."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

__all__ = ["write_report"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _participants(source: Path | None) -> dict[str, dict]:
    if source is None:
        return {}
    path = Path(source) / "participants.tsv"
    if not path.is_file():
        return {}
    from .table import read_table

    return {r.get("participant_id", ""): r for r in read_table(path)}


def _thumbnail(path: Path, width: int = 360) -> str | None:
    try:
        from matplotlib import image as mpimg
        from matplotlib.figure import Figure

        img = mpimg.imread(str(path))
    except (OSError, ValueError, SyntaxError):
        return None
    h, w = img.shape[:2]
    fig = Figure(figsize=(width / 90, width / 90 * h / w), dpi=90)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(img)
    ax.axis("off")
    return _png(fig)


def write_report(path: str | Path, rows: list[dict], *, out_root: str | Path, source: str | Path | None = None,
                 title: str = "napari-pvs cohort report", settings: dict | None = None) -> Path:
    """Write the HTML report of a cohort run (atomically); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ..io import atomic_path

    out_root = Path(out_root)
    ok = [r for r in rows if r.get("status") in ("ok", "skipped")]
    failed = [r for r in rows if r.get("status") == "failed"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(rows)} scans: {len(ok)} done ({sum(r.get('status') == 'skipped' for r in rows)} unchanged "
             f"since an earlier run), {len(failed)} failed. Research use only, not for clinical diagnosis.</p>"]
    bg = np.array([_num(r.get("bg_total")) for r in ok if _num(r.get("bg_total")) is not None])
    cso = np.array([_num(r.get("cso_total")) for r in ok if _num(r.get("cso_total")) is not None])
    if len(ok):
        fig = Figure(figsize=(10, 3.2))
        ax1, ax2, ax3 = fig.subplots(1, 3)
        ax1.hist(bg, bins=range(int(max(bg.max(), 1)) + 2), color="tab:blue")
        ax1.set_title("PVS on the BG slice")
        ax1.set_xlabel("count")
        ax1.set_ylabel("scans")
        ax2.hist(cso, bins=range(int(max(cso.max(), 1)) + 2), color="tab:orange")
        ax2.set_title("PVS on the CSO slice")
        ax2.set_xlabel("count")
        pairs = [(_num(r.get("bg_total")), _num(r.get("cso_total"))) for r in ok]
        pairs = [p for p in pairs if None not in p]
        if pairs:
            x, y = zip(*pairs, strict=True)
            ax3.scatter(x, y, s=18)
        ax3.set_xlabel("BG count")
        ax3.set_ylabel("CSO count")
        ax3.set_title("BG against CSO")
        fig.tight_layout()
        parts.append(f'<h2>Counts</h2><img alt="count distributions" src="{_png(fig)}">')
        grades = {g: [sum(str(r.get(f"{s}_grade")) == str(g) for r in ok) for s in ("bg", "cso")] for g in range(5)}
        parts.append("<h2>Potter grades</h2><table><tr><th>grade</th><th>BG scans</th><th>CSO scans</th></tr>"
                     + "".join(f"<tr><td>{g}</td><td>{b}</td><td>{c}</td></tr>" for g, (b, c) in grades.items())
                     + "</table>")
    people = _participants(Path(source) if source is not None and Path(source).is_dir() else None)
    if people and ok:
        by = [(people.get(r.get("subject", ""), {}), r) for r in ok]
        with_age = [(_num(p.get("age")), p.get("sex"), _num(r.get("bg_total")), _num(r.get("cso_total")))
                    for p, r in by if _num(p.get("age")) is not None]
        if with_age:
            fig = Figure(figsize=(8, 3.2))
            a1, a2 = fig.subplots(1, 2)
            for sex, marker in (("F", "o"), ("M", "s")):
                pts = [w for w in with_age if (w[1] or "").upper().startswith(sex)]
                if pts:
                    a1.scatter([p[0] for p in pts], [p[2] for p in pts], marker=marker, label=sex)
                    a2.scatter([p[0] for p in pts], [p[3] for p in pts], marker=marker, label=sex)
            for a, name in ((a1, "BG"), (a2, "CSO")):
                a.set_xlabel("age (years)")
                a.set_ylabel(f"{name} count")
                a.legend(fontsize=8)
            fig.tight_layout()
            parts.append(f'<h2>Counts by age and sex (participants.tsv)</h2><img alt="counts by age" src="{_png(fig)}">')
    if failed:
        parts.append("<h2>Failed scans</h2><table><tr><th>scan</th><th>error</th></tr>"
                     + "".join(f"<tr><td>{html.escape(str(r.get('scan_id')))}</td><td>{html.escape(str(r.get('error')))}"
                               f"</td></tr>" for r in failed) + "</table>")
    cells = []
    for r in ok:
        rel = r.get("qc_figure")
        if not rel:
            continue
        thumb = _thumbnail(out_root / rel)
        flags = r.get("qc_flags") or ""
        label = (f"{html.escape(str(r.get('scan_id')))}: BG {r.get('bg_total')} (grade {r.get('bg_grade')}), "
                 f"CSO {r.get('cso_total')} (grade {r.get('cso_grade')})"
                 + (f' <b class="flag">{html.escape(flags)}</b>' if flags else ""))
        img = f'<img alt="QC {html.escape(str(r.get("scan_id")))}" src="{thumb}">' if thumb else "(figure missing)"
        cells.append(f'<figure><a href="{html.escape(rel)}">{img}</a><figcaption>{label}</figcaption></figure>')
    if cells:
        parts.append("<h2>QC gallery</h2><p>Click a figure for the full size (red: PVS outlines; cyan: the atlas "
                     "basal ganglia; yellow: the atlas white matter).</p><div class=gallery>" + "".join(cells) + "</div>")
    if settings:
        parts.append("<h2>Settings</h2><pre>" + html.escape("\n".join(f"{k}: {v}" for k, v in settings.items()))
                     + "</pre>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px} .gallery{display:flex;flex-wrap:wrap;gap:12px}"
             "figure{margin:0;width:370px} figcaption{font-size:12px} .flag{color:#b00}")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(doc)
    return path
