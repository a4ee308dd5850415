"""Signed model updates: publish to a TUF repository, fetch and verify on the device, accept, switch, roll back.

    edgerun/update/repo.py     build host: init a repository and its keys, publish a release, refresh expiry
                               (python-tuf's Metadata API; `edgerun publish`)
    edgerun/update/fetch.py    device: fetch_release() through python-tuf's ngclient from a folder or an
                               https:// URL; every TUF refusal is an UpdateRefused naming the attack
    edgerun/update/store.py    device: the model store (versions/, current and previous symlinks, history)
                               and resolve("name@current")
    edgerun/update/accept.py   device: install() a fetched Release: bench it with the profile's budgets in
                               a worker, check reference samples, then switch current; rollback()

The flow: ``repo.publish`` -> ``fetch.fetch_release`` -> ``accept.install`` -> ``store.resolve`` (and
``edgerun.load("name@current")``). docs/update.md says how to run it and what the trust rests on.

Nothing is imported here: ``tuf``, ``securesystemslib`` and ``cryptography`` (the ``update`` extra) are
imported by repo.py and fetch.py inside the functions that use them, so ``import edgerun`` and
``edgerun.load("name@current")`` never pay for them.
"""
