"""`python -m trapdoor_trainer.torchrun ARGS...`: PyTorch's own `torchrun` (torch.distributed.run),
started through here for one fix. On Debian's torch 1.13 under Python 3.11, `Std.from_str("0")`
returns None (zero-valued IntFlag members are no longer iterated), so torchrun's default
`--redirects 0 --tee 0` crash before a worker starts. The fix maps None back to Std.NONE; on a
PyTorch that parses it right it changes nothing.
"""

from __future__ import annotations

from torch.distributed import run
from torch.distributed.elastic.multiprocessing.api import Std

_from_str = Std.from_str


def _from_str_fixed(vm: str):
    parsed = _from_str(vm)
    if parsed is None:
        return Std.NONE
    if isinstance(parsed, dict):
        return {rank: Std.NONE if value is None else value for rank, value in parsed.items()}
    return parsed


Std.from_str = staticmethod(_from_str_fixed)

if __name__ == "__main__":
    run.main()
