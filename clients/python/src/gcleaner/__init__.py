"""Python client for the gcleaner purification service.

gcleaner finds and removes backdoors in graph neural network classifiers. This package talks to
its HTTP service (``gcleaner serve``)::

    import gcleaner

    with gcleaner.Client("http://127.0.0.1:8080", token) as client:
        job = client.purify("suspect.safetensors", "clean.json")
        job.wait(progress=lambda j: print(j.status, j.phase, j.progress))
        print(job.report()["verdict"]["summary"])
        job.download_model("purified.safetensors")

:func:`export_pyg` writes a PyTorch Geometric model in the format the service reads (it needs
``torch``, which the rest of the package does not).
"""

from importlib.metadata import PackageNotFoundError, version

from ._client import TERMINAL_STATUSES, Client, Job, JobStatus, Source
from ._errors import GcleanerError
from ._export import export_pyg, read_spec

try:
    __version__ = version("gcleaner")
except PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0.0.0"

__all__ = [
    "Client",
    "GcleanerError",
    "Job",
    "JobStatus",
    "Source",
    "TERMINAL_STATUSES",
    "export_pyg",
    "read_spec",
    "__version__",
]
