# One run per results folder: Snakemake locks its working directory; two runs from different
# directories could still write the same results_dir. The first real run (not a dry-run) takes
# this lock; a second is refused.
import os

from snakemake.exceptions import WorkflowError

from workflow_scripts.lib import layout


def results_lock():
    return layout.run_lock(RESULTS)


def take_results_lock():
    import socket

    os.makedirs(RESULTS, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        descriptor = os.open(results_lock(), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        host, pid = open(results_lock()).read().split()
        if host == socket.gethostname() and not layout.process_alive(int(pid)):
            os.replace(results_lock(), results_lock() + ".stale")  # that run is gone: take over
            return take_results_lock()
        raise WorkflowError(
            f"results_dir {RESULTS} is in use by another Snakemake run (process {pid} on {host}); "
            f"wait for it to finish, or delete {results_lock()} if that run no longer exists"
        )
    with os.fdopen(descriptor, "w") as handle:
        handle.write(me + "\n")


def release_results_lock():
    if os.path.exists(results_lock()) and open(results_lock()).read().split()[1:] == [str(os.getpid())]:
        os.remove(results_lock())
