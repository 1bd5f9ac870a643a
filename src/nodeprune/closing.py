"""The ``with`` protocol of the objects that hold hooks on a model (a workbench, a
discovery or edge run, a comparison): leaving the block closes them, so the model is
left as it was found, errors included."""

from __future__ import annotations

from typing import Self


class ClosedOnExit:
    """``with obj:`` gives ``obj`` and calls ``obj.close()`` on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
