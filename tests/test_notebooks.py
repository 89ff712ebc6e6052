"""The notebooks run top to bottom with the project's kernel and are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    # a fresh project root without pipeline outputs: the notebook must simulate what it needs
    (tmp_path / "params.yaml").write_bytes((path.parents[1] / "params.yaml").read_bytes())
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    # the kernel keeps Jupyter's inline backend (as a reader's would), so figures show as images
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    # the kernel is this interpreter (the project's .venv), registered under a private name
    from ipykernel.kernelspec import install

    kernels = tmp_path / "kernels"
    install(prefix=str(kernels), kernel_name="outcomes-test")
    monkeypatch.setenv("JUPYTER_PATH", str(kernels / "share" / "jupyter"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="outcomes-test", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    # ipykernel.kernelspec.install writes this interpreter (the .venv) into the kernelspec
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    assert not any(
        t.startswith("<Figure size") and "image/png" not in o.get("data", {})
        for t, o in zip(texts, outputs, strict=True)
    ), "a figure was shown as text, not drawn"
    if "figure" in path.read_text():  # notebooks that draw must show their figures as images
        assert any("image/png" in o.get("data", {}) for o in outputs)
