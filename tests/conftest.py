import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="CUDA is not available on this machine")),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
