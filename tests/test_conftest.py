"""conftest.py's warning filter: a deprecation warned from our own code (the library, the
repository's scripts, the tests) fails the test that ran it. Its check around every test: one
that leaves torch's process-wide settings changed fails, and they are set back."""

from __future__ import annotations

import warnings

import pytest
import torch
from _tiny import torch_settings_kept


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning,
                                      FutureWarning])
@pytest.mark.parametrize("module", ["stgconv", "stgconv.checks", "test_checks", "_tiny",
                                    "bench.common", "<run_path>", "_script_video_prepare"])
def test_a_deprecation_warned_from_our_own_code_fails_the_test(
        module: str, category: type[Warning], request: pytest.FixtureRequest) -> None:
    if request.config.known_args_namespace.pythonwarnings:
        pytest.skip("a -W on pytest's command line takes precedence over conftest.py's filter")
    # warn_explicit names the module the warning is attributed to, as a deprecated function's
    # warnings.warn(..., stacklevel=2) names its caller's.
    with pytest.raises(category, match="an old API"):
        warnings.warn_explicit("an old API", category, "caller.py", 1, module=module)


@pytest.mark.parametrize("module", ["torch.serialization", "numpy", "stgconvx", "datasets"])
def test_a_deprecation_inside_a_third_party_library_stays_a_warning(
        module: str, request: pytest.FixtureRequest) -> None:
    if request.config.known_args_namespace.pythonwarnings:
        pytest.skip("a -W on pytest's command line takes precedence over conftest.py's filter")
    with warnings.catch_warnings(record=True) as caught:  # the filters in force, recording
        warnings.warn_explicit("an old API", DeprecationWarning, "inside.py", 1, module=module)
    assert [str(w.message) for w in caught] == ["an old API"]


def test_a_test_that_leaves_torchs_thread_count_changed_fails_and_it_is_set_back() -> None:
    threads = torch.get_num_threads()
    with pytest.raises(AssertionError, match=f"intra-op threads {threads} -> {threads + 1}"):
        with torch_settings_kept():
            torch.set_num_threads(threads + 1)
    assert torch.get_num_threads() == threads


def test_a_test_that_leaves_torchs_default_dtype_changed_fails_and_it_is_set_back() -> None:
    dtype = torch.get_default_dtype()
    with pytest.raises(AssertionError, match="default dtype torch.float32 -> torch.float64"):
        with torch_settings_kept():
            torch.set_default_dtype(torch.float64)
    assert torch.get_default_dtype() == dtype == torch.float32


def test_settings_set_back_inside_the_block_pass() -> None:
    with torch_settings_kept():
        threads = torch.get_num_threads()
        torch.set_num_threads(threads + 1)
        torch.set_num_threads(threads)
