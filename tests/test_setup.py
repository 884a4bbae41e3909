"""fvlib.setup and the device choice: bad arguments are one clear error before any data or training."""
from __future__ import annotations

import pytest

import fvlib
from fvlib import runtime
from fvlib.config import PROFILE_NAMES


@pytest.mark.parametrize("bad", [123, None, 1.5])
def test_setup_with_no_profile_name_lists_the_profiles(bad):
    with pytest.raises(TypeError) as info:
        fvlib.setup(bad)
    assert repr(bad) in str(info.value) and all(p in str(info.value) for p in PROFILE_NAMES)


def test_setup_refuses_a_data_root_for_the_embedded_digits(tmp_path):
    with pytest.raises(ValueError, match=r"'smoke'.*embedded digits.*no data root"):
        fvlib.setup("smoke", str(tmp_path))
    with pytest.raises(ValueError, match="no data root"):
        fvlib.setup("smoke", data_root=str(tmp_path))


@pytest.mark.parametrize("name", ["meta", "mps", "npu", "cuda:x"])
def test_an_unsupported_device_names_the_supported_ones(name):
    with pytest.raises(ValueError, match=r"not supported.*'auto', 'cpu', 'cuda'"):
        runtime.pick_device(name)
    with pytest.raises(ValueError, match="not supported"):
        fvlib.setup("smoke", device=name, progress=False)


def test_cpu_and_auto_devices_still_work():
    assert runtime.pick_device("cpu").type == "cpu"
    assert runtime.pick_device("auto").type in ("cpu", "cuda")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.pick_device("cuda")
