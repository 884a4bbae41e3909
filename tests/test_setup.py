"""fvlib.setup / fvlib.notebook, profiles and the device choice: bad arguments are one clear error
before any data or training; study sizes; the CI swap."""
from __future__ import annotations

import dataclasses

import pytest

import fvlib
from fvlib import config, experiment, runtime, sensitivity, views
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


def test_profile_fields_of_nested_configs_say_where_they_live():
    prof = config.get_profile("smoke")
    with pytest.raises(ValueError, match=r"epochs is a field of the TrainConfig in `train`"):
        prof.replace(epochs=3)
    with pytest.raises(ValueError, match=r"tau is a field of the FVConfig in `fv`"):
        prof.replace(tau=2.0)
    with pytest.raises(ValueError, match="a profile has no field 'colour'"):
        prof.replace(colour="red")


def test_study_sizes_come_from_the_study_with_the_profiles_overrides():
    smoke, quick = config.get_profile("smoke"), config.get_profile("quick")
    assert sensitivity.sizes(experiment_of(quick)).taus == sensitivity.TAUS  # the paper's grid
    assert sensitivity.sizes(experiment_of(smoke)).taus == (0.0, 1.0, 2.0)
    assert quick.sizes("shifts", views.ShiftSizes).pgd_max_eval == 2000
    bad = smoke.replace(studies={"sweeps": {"tau_grid": (1.0,)}})
    with pytest.raises(ValueError, match="sets tau_grid for the 'sweeps' study, which has only epochs"):
        bad.sizes("sweeps", sensitivity.SweepSizes)


def experiment_of(profile):
    """Just enough of an experiment for the sizes lookups."""
    return type("Ex", (), {"profile": profile})()


def test_sizes_and_trials_given_to_setup_override_the_profile(digits):
    ex = fvlib.setup("smoke", trials=2, sizes={"sweeps": {"trials": 1}}, progress=False)
    assert ex.profile.trials == 2 and sensitivity.sizes(ex).trials == 1
    assert sensitivity.sizes(ex).taus == (0.0, 1.0, 2.0)  # the rest of the profile's sweeps stays


def test_the_development_split_is_a_share_of_each_dataset(digits):
    dev = fvlib.setup("smoke", development=True, progress=False)
    share = config.get_profile("smoke").sizes("development", experiment.Development).fraction
    assert len(dev.data.test_y) == round(share * len(digits.train_y))
    assert len(dev.data.train_y) + len(dev.data.test_y) == len(digits.train_y) and dev.development
    assert experiment.Development().fraction * 50_000 == 5_000  # CIFAR-10's 5,000 held-out images


def test_notebook_swaps_in_smoke_under_ci_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("CI", "1")
    ex = fvlib.notebook("quick", "/no/such/archive")
    assert ex.name == "smoke" and "CI is set: running profile 'smoke'" in capsys.readouterr().out
    monkeypatch.delenv("CI")
    ex = fvlib.notebook("smoke", "")
    out = capsys.readouterr().out
    assert "CI is set" not in out and "θ_o train" in out
    assert dataclasses.asdict(ex.profile) == dataclasses.asdict(config.get_profile("smoke"))
