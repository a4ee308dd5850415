"""Signed model updates: publish to a TUF repository, fetch and verify on the device, accept, switch, roll back.

    edgerun/update/repo.py     build host: init a repository, publish a release, refresh expiry, rotate keys
                               (python-tuf's Metadata API; `edgerun publish`)
    edgerun/update/keys.py     build host: the signing key files (ed25519, one PEM each; retired keys)
    edgerun/update/fetch.py    device: fetch_release() through python-tuf's ngclient from a folder or an
                               https:// URL; every TUF refusal is an UpdateRefused naming the attack
    edgerun/update/store.py    device: the model store (versions/, current and previous symlinks, history)
                               and resolve("name@current")
    edgerun/update/accept.py   device: install() a fetched Release: bench it with the profile's budgets in
                               a worker, check reference samples, then switch current; rollback()
    edgerun/update/reference.py  device: the reference-sample top-1 check acceptance runs in its worker

The flow: ``repo.publish`` -> ``fetch.fetch_release`` -> ``accept.install`` -> ``store.resolve`` (and
``edgerun.load("name@current")``). docs/update.md says how to run it and what the trust rests on.

Nothing is imported here: ``tuf``, ``securesystemslib`` and ``cryptography`` (the ``update`` extra) are
imported by repo.py, keys.py and fetch.py inside the functions that use them, so ``import edgerun`` and
``edgerun.load("name@current")`` never pay for them.
"""
