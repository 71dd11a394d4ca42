"""Agreement of two cohort tables: two runs, two models, or a model against raters' visual
counts (a CSV or TSV with a subject or scan id and the BG and CSO counts).

For the BG and CSO counts of the scans both tables hold: Spearman's rho (scipy), ICC(2,1)
and ICC(3,1) with 95 % confidence intervals (pingouin's ``intraclass_corr``: two-way random
and mixed, single measures, absolute agreement and consistency), the quadratically weighted
kappa of the Potter grades (scikit-learn's ``cohen_kappa_score``), and the Bland-Altman
mean difference with its 95 % limits of agreement (mean +- 1.96 SD of the differences,
plotted with pingouin's ``plot_blandaltman``), in a small self-contained HTML report.

Refer to: Shrout P. E. and Fleiss J. L., "Intraclass correlations: uses in assessing rater
reliability", Psychol Bull 86, 1979, doi:10.1037/0033-2909.86.2.420; Koo T. K. and Li M. Y.,
J Chiropr Med 15, 2016, doi:10.1016/j.jcm.2016.02.012; Bland J. M. and Altman D. G., Lancet
1986, doi:10.1016/S0140-6736(86)90837-8; Vallat R., "Pingouin: statistics in Python", JOSS
2018, doi:10.21105/joss.01026.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..rating import potter_grade
from .table import read_table

__all__ = ["compare_tables", "agreement_report", "ID_COLUMNS", "COUNT_ALIASES"]

#: columns naming the scan, in the order they are looked for
ID_COLUMNS = ("scan_id", "subject", "participant_id", "id")
#: accepted names of the BG and CSO counts and grades
COUNT_ALIASES = {"bg": ("bg_total", "bg", "BG", "bg_count"), "cso": ("cso_total", "cso", "CSO", "cso_count"),
                 "bg_grade": ("bg_grade", "BG_grade"), "cso_grade": ("cso_grade", "CSO_grade")}


def _column(row: dict, names) -> str | None:
    for n in names:
        if n in row:
            return n
    return None


def _load(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.is_file():
        raise PVSInputError("not found", path)
    rows = [r for r in read_table(path) if r.get("status") in (None, "ok", "skipped")]
    if not rows:
        raise PVSInputError("no row with counts", path)
    idc = _column(rows[0], ID_COLUMNS)
    bgc, csoc = _column(rows[0], COUNT_ALIASES["bg"]), _column(rows[0], COUNT_ALIASES["cso"])
    if idc is None or bgc is None or csoc is None:
        raise PVSInputError(f"expected an id column ({', '.join(ID_COLUMNS)}) and BG and CSO counts "
                            f"(e.g. bg_total, cso_total); got {', '.join(rows[0])}", path)
    out = {}
    for r in rows:
        try:
            bg, cso = int(float(r[bgc])), int(float(r[csoc]))
        except (TypeError, ValueError):
            continue
        gb, gc = _column(r, COUNT_ALIASES["bg_grade"]), _column(r, COUNT_ALIASES["cso_grade"])
        out[str(r[idc])] = {"bg": bg, "cso": cso,
                            "bg_grade": int(float(r[gb])) if gb and r[gb] is not None else potter_grade(bg),
                            "cso_grade": int(float(r[gc])) if gc and r[gc] is not None else potter_grade(cso)}
    return out


def compare_tables(a: str | Path, b: str | Path) -> dict:
    """Agreement statistics of two tables on the scans both hold (see the module docstring).

    Returns
    -------
    dict
        ``n`` and, per ``"bg"`` and ``"cso"``: ``spearman_rho``, ``spearman_p``, ``icc21``,
        ``icc21_ci95``, ``icc31``, ``icc31_ci95``, ``kappa_weighted`` (grades),
        ``mean_difference`` (A - B), ``loa_low``, ``loa_high``, and ``pairs`` (A, B).

    Raises
    ------
    PVSInputError
        A table that cannot be read, or fewer than 3 scans in common.
    """
    import pandas as pd
    import pingouin as pg
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    ta, tb = _load(a), _load(b)
    common = sorted(set(ta) & set(tb))
    if len(common) < 3:
        raise PVSInputError(f"only {len(common)} scans in common (at least 3 are needed): check the id columns",
                            Path(b))
    out = {"n": len(common), "ids": common}
    for region in ("bg", "cso"):
        x = np.array([ta[k][region] for k in common], float)
        y = np.array([tb[k][region] for k in common], float)
        res = {"pairs": list(zip(x.tolist(), y.tolist(), strict=True))}
        if np.ptp(x) == 0 and np.ptp(y) == 0:
            res.update(spearman_rho=None, spearman_p=None)
        else:
            rho, p = spearmanr(x, y)
            res.update(spearman_rho=float(rho), spearman_p=float(p))
        long = pd.DataFrame({"scan": common * 2, "rater": ["A"] * len(common) + ["B"] * len(common),
                             "count": np.concatenate([x, y])})
        try:
            icc = pg.intraclass_corr(data=long, targets="scan", raters="rater", ratings="count").set_index("Type")
            ci_col = "CI95%" if "CI95%" in icc.columns else "CI95"
            # pingouin names ICC(2,1) "ICC2" (older) or "ICC(A,1)" (absolute agreement), and
            # ICC(3,1) "ICC3" or "ICC(C,1)" (consistency)
            for key, names in (("icc21", ("ICC2", "ICC(A,1)")), ("icc31", ("ICC3", "ICC(C,1)"))):
                typ = next(n for n in names if n in icc.index)
                res[key] = float(icc.loc[typ, "ICC"])
                res[f"{key}_ci95"] = [float(v) for v in icc.loc[typ, ci_col]]
        except (ValueError, AssertionError, ZeroDivisionError, StopIteration):
            for key in ("icc21", "icc31"):
                res[key], res[f"{key}_ci95"] = None, None
        ga = [ta[k][f"{region}_grade"] for k in common]
        gb = [tb[k][f"{region}_grade"] for k in common]
        res["kappa_weighted"] = float(cohen_kappa_score(ga, gb, weights="quadratic", labels=[0, 1, 2, 3, 4])) \
            if len(set(ga) | set(gb)) > 1 else None
        diff = x - y
        sd = float(np.std(diff, ddof=1))
        res.update(mean_difference=float(diff.mean()), loa_low=float(diff.mean() - 1.96 * sd),
                   loa_high=float(diff.mean() + 1.96 * sd))
        out[region] = res
    return out


def _fmt(v, spec=".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def agreement_report(stats: dict, path: str | Path, *, name_a: str = "A", name_b: str = "B") -> Path:
    """A small self-contained HTML report of :func:`compare_tables` (the table and the two
    Bland-Altman plots), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pingouin as pg

    from ..io import atomic_path
    from .report import _png

    rows = []
    plots = []
    for region in ("bg", "cso"):
        r = stats[region]

        def ci(k, r=r):
            return "n/a" if r.get(k) is None else f"{r[k][0]:.2f} to {r[k][1]:.2f}"

        rows.append(f"<tr><td>{region.upper()}</td><td>{_fmt(r['spearman_rho'])}</td><td>{_fmt(r['icc21'])} "
                    f"({ci('icc21_ci95')})</td><td>{_fmt(r['icc31'])} ({ci('icc31_ci95')})</td>"
                    f"<td>{_fmt(r['kappa_weighted'])}</td><td>{r['mean_difference']:.2f} "
                    f"[{r['loa_low']:.2f}, {r['loa_high']:.2f}]</td></tr>")
        x, y = np.array(r["pairs"]).T
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        pg.plot_blandaltman(x, y, ax=ax)
        ax.set_title(f"{region.upper()} count: {name_a} - {name_b}")
        fig.tight_layout()
        plots.append(f'<img alt="Bland-Altman {region}" src="{_png(fig)}">')
        plt.close(fig)
    doc = ("<!doctype html><html><head><meta charset='utf-8'><title>napari-pvs agreement</title><style>"
           "body{font-family:sans-serif;margin:2em} td,th{border:1px solid #ccc;padding:2px 8px}"
           "table{border-collapse:collapse}</style></head><body>"
           f"<h1>Agreement: {html.escape(name_a)} and {html.escape(name_b)}</h1><p>{stats['n']} scans in common.</p>"
           "<table><tr><th>slice</th><th>Spearman rho</th><th>ICC(2,1) (95 % CI)</th><th>ICC(3,1) (95 % CI)</th>"
           "<th>weighted kappa (grades)</th><th>mean difference [95 % limits of agreement]</th></tr>"
           + "".join(rows) + "</table>" + "".join(plots) + "</body></html>")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(doc)
    return path
