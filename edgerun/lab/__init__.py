"""The device lab: a plan of artifacts x targets x options, run resumably into one SQLite file.

    edgerun lab run PLAN.toml       jobs in parallel across devices, one at a time per device
    edgerun lab report [DB]         static HTML (plots embedded) and a Markdown summary
    edgerun lab compare BASE CAND   p50/p99 changes with a test on the raw samples; CI exit code
    edgerun lab places [PLAN]       a labgrid coordinator's places, and which a plan's labgrid targets use
    edgerun lab merge OUT DB...     several lab databases (lab hosts) into a new one

``plan`` (TOML -> jobs), ``store`` (SQLite), ``scheduler`` (a thread per device) running a
``target_runner`` each (one device's jobs in turn), ``report`` + ``plots`` (matplotlib, the
``lab`` extra, imported lazily), ``compare``; labgrid places (the ``lab`` extra; the coordinator link
and what a place's resources are live in edgerun.targets.labgrid_client and .labgrid_resources, below
the serial host too): ``labgrid_run`` (the pools of place workers),
``place_worker`` (one place: reserve, acquire, run, release) with ``place_kinds`` (phones,
wearables, power cycles), ``ledger`` (job claims and place leases), ``places``, ``merge``.
"""
