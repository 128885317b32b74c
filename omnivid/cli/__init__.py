"""The ``omnivid`` command line (also ``python -m omnivid``).

Commands::

    omnivid batch JOBS.jsonl --out DIR [--provider P] [--max-in-flight N] [--max-cost X]
                  [--max-downloads N] [--simulate] [--resubmit-ambiguous] [--strict]
                  [--video-names key|task] [--journal PATH|postgresql://...] [--batch NAME]
    omnivid generate PROMPT --model M [--image PATH_OR_URL]... [--video ...] [--duration D]
                  --out DIR [--simulate]
    omnivid status TASK_ID --provider P [--json]
    omnivid download TASK_ID --provider P --out DIR [--overwrite]
    omnivid results --journal postgresql://... --batch NAME   (a shared batch's rows)
    omnivid models [--json]
    omnivid sim [simulator options]            (see ``omnivid sim --help``)

Exit status: 0 when everything succeeded, 1 when a job or task failed, 2 for a usage, input or
configuration error (printed as one ``omnivid: error: ...`` line, never a traceback), 130 after
Ctrl-C (143 after SIGTERM), once the task ids still running have been printed.

API keys come only from the environment (``APIMART_API_KEY``, ``EVOLINK_API_KEY``); base URLs
from ``--base-url`` or ``OMNIVID_<PROVIDER>_BASE_URL``. ``--simulate`` runs against an
in-process simulator instead, with no key at all.

Modules: ``_main`` (the entry point), ``_parser`` (every command's arguments), one module per
command (``_batch`` with ``_batch_run``, ``_batch_rows``, ``_jobindex`` (the jobs file read
twice, never held), ``_downloads`` (the download queue) and ``_saving`` (expired URLs);
``_shared_batch`` (a batch shared through PostgreSQL); ``_results_cmd`` for results,
``_generate``, ``_tasks`` for status and download, ``_list_models``, ``_sim``), and what they
share: ``_common`` (exit statuses, the client), ``_env`` (endpoints and keys), ``_jobs`` (the
jobs file's lines), ``_progress`` (the display), ``_results`` (results.jsonl) and ``_videos``
(the videos' file names).
"""

from ._main import main

__all__ = ["main"]
