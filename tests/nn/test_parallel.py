"""nn.parallel: the one decision on threads (a pure function of cores, ranks and the override)."""
import pytest

from nn import parallel


@pytest.mark.parametrize("cores, ranks, env, threads", [
    (2, 1, {}, 2), (16, 4, {}, 4), (16, 3, {}, 5), (2, 3, {}, 1), (1, 1, {}, 1),
    (2, 1, {"STRUCTNET_THREADS": "5"}, 5),        # the override wins, oversubscribing if asked
    (16, 4, {"STRUCTNET_THREADS": " 1 "}, 1),
])
def test_decide(cores, ranks, env, threads):
    assert parallel.decide(cores, ranks, env) == threads
    assert ranks * parallel.decide(cores, ranks, {}) <= max(cores, ranks)    # never oversubscribed by default


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_decide_ignores_a_bad_override_with_a_warning(bad, capsys):
    assert parallel.decide(8, 2, {"STRUCTNET_THREADS": bad}) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "STRUCTNET_THREADS" in err and "ignored" in err


def test_sharing_ranks_counts_ranks_on_the_same_cores():
    unbound = [{0, 1, 2, 3}] * 4
    assert parallel.sharing_ranks({0, 1, 2, 3}, unbound) == 4
    bound = [{0, 1}, {2, 3}]                        # mpiexec -bind-to core:2
    assert parallel.sharing_ranks({0, 1}, bound) == 1
    assert parallel.sharing_ranks({0, 1}, [{0, 1}, {1, 2}, {3}]) == 2
    assert parallel.sharing_ranks(set(), [set(), set()]) == 2   # affinity unknown: all of them


def test_launcher_local_size():
    assert parallel.launcher_local_size({}) == 1
    assert parallel.launcher_local_size({"OMPI_COMM_WORLD_LOCAL_SIZE": "3"}) == 3
    assert parallel.launcher_local_size({"MPI_LOCALNRANKS": "2"}) == 2
    assert parallel.launcher_local_size({"MPI_LOCALNRANKS": "x"}) == 1


def test_configure_applies_the_decision_everywhere(monkeypatch):
    monkeypatch.delenv("STRUCTNET_THREADS", raising=False)
    before = parallel.threads()
    cores = parallel.available_cores()
    try:
        n = parallel.configure(cores)               # as many ranks as cores: one thread each
        assert n == 1 and parallel.threads() == 1 and parallel.fft_workers() == 1
        assert parallel.blas_threads()[1] <= 1
        assert "1 thread per rank" in parallel.describe() and "thread pool off" in parallel.describe()
        seen = []
        parallel.for_blocks(seen.append, 10, size=1 << 20)
        assert seen == [slice(0, 10)]               # no pool: one call
    finally:
        assert parallel.configure(1) == before      # the BLAS threads come back up to the library's own
    line = parallel.describe()
    assert f"{cores} core" in line and f"FFT workers {before}" in line


def test_for_blocks_inside_a_pool_task_runs_inline(monkeypatch):
    """A for_blocks call from inside a pool task (the APF's chunks calling a kernel that splits its
    own work) runs inline: with 2 workers both busy, submitting would wait on itself forever."""
    import threading
    before = parallel.threads()
    monkeypatch.setenv("STRUCTNET_THREADS", "2")
    try:
        assert parallel.configure(1) == 2
        seen, lock = [], threading.Lock()

        def outer(s):
            inner = []
            parallel.for_blocks(inner.append, 8, size=1 << 20)
            assert inner == [slice(0, 8)]           # one inline call, not two pool tasks
            with lock:
                seen.append(s)
        done = threading.Thread(target=parallel.for_blocks, args=(outer, 4, 1 << 20), daemon=True)
        done.start()
        done.join(timeout=30)
        assert not done.is_alive(), "nested for_blocks deadlocked"
        assert sorted((s.start, s.stop) for s in seen) == [(0, 2), (2, 4)]
        parallel.for_blocks(seen.append, 4, size=1 << 20)      # outside a task: the pool again
        assert seen[-2:] in ([slice(0, 2), slice(2, 4)], [slice(2, 4), slice(0, 2)])
    finally:
        monkeypatch.delenv("STRUCTNET_THREADS")
        parallel.configure(1)
    assert parallel.threads() == before
