"""ROOT TTrees through uproot (the ``[root]`` extra): flat, fixed-size and jagged numeric branches."""
from __future__ import annotations

from typing import Any

import numpy as np

from hepflow.data.samples import SampleSpec
from hepflow.data.sources.columnar import Branch, BranchSource, Jagged
from hepflow.errors import DataError

__all__ = ["RootSource", "uproot_module", "list_trees"]


def uproot_module():
    """The uproot module, or an ImportError naming the extra."""
    try:
        import uproot  # optional extra [root]
    except ImportError as e:
        raise ImportError(f"Reading ROOT files needs uproot: pip install -e '.[root]'. Missing: {e.name}") from None
    return uproot


def list_trees(f) -> list[str]:
    """The TTrees of an open ROOT file (paths without cycle numbers)."""
    return sorted({k.split(";")[0] for k, c in f.classnames(recursive=True).items() if c in ("TTree", "TNtuple")})


class _Handle:
    def __init__(self, path: str, file, tree) -> None:
        self.path, self.file, self.tree = path, file, tree

    def close(self) -> None:
        self.file.close()


class RootSource(BranchSource):
    """Reads one TTree per file (``spec.tree``, or the file's only tree)."""

    format = "root"

    def __init__(self, spec: SampleSpec) -> None:
        super().__init__(spec)
        self.uproot = uproot_module()

    def open(self, path: str) -> _Handle:
        spec = self.spec
        try:
            f = self.uproot.open(path)
        except FileNotFoundError:
            raise DataError(f"Sample '{spec.name}': file not found: {path}. Received: a missing path") from None
        except Exception as e:  # uproot raises ValueError, OSError, DeserializationError... on a bad file
            raise DataError(f"Sample '{spec.name}': cannot open {path} as a ROOT file; expected a complete ROOT "
                            f"file. Received: {type(e).__name__}: {e}") from None
        trees = list_trees(f)
        name = spec.tree
        if name is None:
            if len(trees) != 1:
                f.close()
                raise DataError(f"Sample '{spec.name}': {path} holds {len(trees)} TTrees {trees}; name one with "
                                "`tree:`. Received: tree=None")
            name = trees[0]
        if name not in trees:
            f.close()
            raise DataError(f"Sample '{spec.name}': TTree '{name}' does not exist in {path}; available: {trees}. "
                            f"Received: tree={name!r}")
        return _Handle(path, f, f[name])

    def where(self, path: str) -> str:
        return f"{path}:{self.spec.tree}" if self.spec.tree else path

    def n_entries(self, handle: _Handle) -> int:
        return int(handle.tree.num_entries)

    def cluster_edges(self, handle: _Handle) -> np.ndarray:
        tree = handle.tree
        return np.asarray(tree.common_entry_offsets(filter_name=lambda n: n in self._needed), np.int64)

    def branches(self, handle: _Handle, path: str) -> tuple[dict[str, Branch], dict[str, str]]:
        interp = self.uproot.interpretation
        readable, other = {}, {}
        for name, branch in handle.tree.iteritems(filter_typename=None, recursive=True):
            try:
                i = branch.interpretation
            except Exception:  # an unknown streamer: report its type name
                i = None
            jagged = isinstance(i, interp.jagged.AsJagged)
            inner = i.content if jagged else i
            if isinstance(inner, interp.numerical.AsDtype) and not isinstance(inner, interp.numerical.AsDtypeInPlace):
                dt = np.dtype(inner.to_dtype)
                base, shape = dt.subdtype if dt.subdtype else (dt, ())
                if base.kind in "biuf" and not (jagged and shape):
                    readable[name] = Branch(jagged, tuple(shape), np.dtype(base).newbyteorder("="))
                    continue
            other[name] = branch.typename
        return readable, other

    def arrays(self, handle: _Handle, names: list[str], start: int, stop: int) -> dict[str, Any]:
        got = handle.tree.arrays(names, entry_start=start, entry_stop=stop, library="ak", how=dict)
        ak = self.ak
        return {k: (Jagged.of_awkward(ak, v) if "var" in str(v.type) else ak.to_numpy(v)) for k, v in got.items()}
