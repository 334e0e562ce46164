"""An RDKit grid of molecules with SMILES legends: prior samples, interpolation paths, neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scivae.errors import ScivaeInputError
from scivae.pl.fit import _new_axes, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Columns of scivae's molecule tables shown under the SMILES when present (name -> legend format).
LEGEND_COLUMNS = {"t": "t={:.2f}", "value": "z={:+.2f}", "similarity": "Tanimoto {:.2f}", "distance": "|dz| {:.2f}"}
#: Height of the legend band under each molecule, in pixels.
LEGEND_PIXELS = 36
#: Longest SMILES written in full in a legend.
MAX_LEGEND_CHARS = 38


def _legend(smiles: str, valid: bool, extras: list[str]) -> str:
    text = smiles if len(smiles) <= MAX_LEGEND_CHARS else smiles[: MAX_LEGEND_CHARS - 3] + "..."
    lines = [text if valid else f"invalid: {text}"]
    if extras:
        lines.append(", ".join(extras))
    return "\n".join(lines)


def _draw(mol: Any, width: int, height: int, rdMolDraw2D: Any) -> np.ndarray:
    """One molecule as an RGB float array, drawn by RDKit's Cairo canvas (no PIL or notebook renderer)."""
    import io

    import matplotlib.image as mpimg

    canvas = rdMolDraw2D.MolDraw2DCairo(width, height)
    options = canvas.drawOptions()
    options.padding = 0.12
    options.fixedBondLength = height / 8  # one scale for all molecules (larger ones still shrink to fit)
    canvas.DrawMolecule(mol)
    canvas.FinishDrawing()
    return mpimg.imread(io.BytesIO(canvas.GetDrawingText()), format="png")[..., :3]


def molecules(
    data: pd.DataFrame | Sequence[str],
    *,
    color: str | None = None,
    n_cols: int = 5,
    max_molecules: int = 40,
    mol_size: tuple[int, int] = (240, 200),
    legend: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure:
    """Draw molecules on a grid with their SMILES as legends.

    Parameters
    ----------
    data
        A table from ``MolVAE.sample``, ``interpolate``, ``neighbors``, ``reconstruct`` or :mod:`scivae.latent`
        (columns ``smiles`` and optionally ``valid``, ``t``, ``value``, ``similarity``, ``distance``, which go
        into the legends), or a list of SMILES.
    color
        A numeric column whose value is added to every legend (e.g. ``"similarity"``); default: the known
        columns present (:data:`LEGEND_COLUMNS`).
    n_cols, max_molecules, mol_size
        Molecules per row, at most this many drawn (the first ones), size of each cell in pixels.
    legend
        Legends to use instead (one per molecule).
    title, ax, show, save
        Figure title; Axes to draw into; ``plt.show()``; save path. The figure is returned.
    """
    try:
        from rdkit import Chem
        from rdkit.Chem.Draw import rdMolDraw2D
    except ImportError:
        raise ScivaeInputError("molecule grids need RDKit: pip install 'scivae[molecules]'") from None
    table = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame({"smiles": list(data)})
    if "smiles" not in table:
        raise ScivaeInputError("the table has no 'smiles' column: pass a scivae molecule table or a list of SMILES")
    if table.empty:
        raise ScivaeInputError("no molecule to draw")
    table = table.iloc[: int(max_molecules)]
    columns = [color] if color is not None else [c for c in LEGEND_COLUMNS if c in table]
    for c in columns:
        if c not in table:
            raise ScivaeInputError(f"no column {c!r} in the table: use one of {', '.join(map(str, table.columns))}")
    from scivae.molecules.data import rdkit_quiet

    mols, legends = [], []
    with rdkit_quiet():
        for i, row in enumerate(table.itertuples(index=False)):
            smiles = str(row.smiles)
            mol = Chem.MolFromSmiles(smiles) if smiles else None
            valid = mol is not None and bool(getattr(row, "valid", True))
            extras = []
            for c in columns:
                value = getattr(row, c)
                if isinstance(value, (int, float, np.number)) and np.isfinite(value):
                    extras.append(LEGEND_COLUMNS.get(c, c + " {:.3g}").format(float(value)))
            mols.append(mol if valid else None)
            legends.append(str(legend[i]) if legend is not None else _legend(smiles, valid, extras))
    n_cols = max(1, min(int(n_cols), len(mols)))
    n_rows = -(-len(mols) // n_cols)
    w, h = (int(v) for v in mol_size)
    tile = h + LEGEND_PIXELS  # the molecule, then a white band for its legend
    grid = np.ones((n_rows * tile, n_cols * w, 3), dtype=np.float32)
    for i, mol in enumerate(mols):
        if mol is not None:
            r, c = divmod(i, n_cols)
            grid[r * tile : r * tile + h, c * w : (c + 1) * w] = _draw(mol, w, h, rdMolDraw2D)
    fig, ax = _new_axes(ax, (n_cols * w / 80, n_rows * tile / 80 + (0.4 if title else 0)))
    ax.imshow(grid)
    for i, text in enumerate(legends):
        r, c = divmod(i, n_cols)
        color = "black" if mols[i] is not None else "tab:red"
        ax.text(c * w + w / 2, r * tile + h + 2, text, ha="center", va="top", fontsize=8, color=color)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, show, save)
