"""An RDKit grid of molecules with SMILES legends: prior samples, interpolation paths, neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scivae.core.plots import _new_axes, finish
from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Columns of scivae's molecule tables shown under the SMILES when present (name -> legend format).
LEGEND_COLUMNS = {"t": "t={:.2f}", "value": "z={:+.2f}", "similarity": "Tanimoto {:.2f}", "distance": "|dz| {:.2f}"}
#: Longest SMILES written in full in a legend.
MAX_LEGEND_CHARS = 38


def _legend(smiles: str, valid: bool, extras: list[str]) -> str:
    text = smiles if len(smiles) <= MAX_LEGEND_CHARS else smiles[: MAX_LEGEND_CHARS - 3] + "..."
    lines = [text if valid else f"invalid: {text}"]
    if extras:
        lines.append(", ".join(extras))
    return "\n".join(lines)


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
    from scivae.molecules.io import rdkit_quiet

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
            mols.append(mol if valid else Chem.Mol())
            legends.append(str(legend[i]) if legend is not None else _legend(smiles, valid, extras))
    n_cols = max(1, min(int(n_cols), len(mols)))
    n_rows = -(-len(mols) // n_cols)
    w, h = (int(v) for v in mol_size)
    # drawn with RDKit's Cairo canvas to PNG bytes (no PIL or notebook renderer involved)
    canvas = rdMolDraw2D.MolDraw2DCairo(w * n_cols, h * n_rows, w, h)
    canvas.drawOptions().legendFontSize = 14
    canvas.DrawMolecules(mols, legends=legends)
    canvas.FinishDrawing()
    import io

    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(canvas.GetDrawingText()), format="png")
    height, width = pixels.shape[:2]
    fig, ax = _new_axes(ax, (width / 100, height / 100 + (0.4 if title else 0)))
    ax.imshow(pixels)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, show, save)
