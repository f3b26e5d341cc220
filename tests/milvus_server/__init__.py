"""A real Milvus standalone server (PyPI ``milvus``, "Embedded Milvus" 2.3.x) for the Milvus-server suites,
run only inside a loopback-only network namespace made by ``run.sh``; see ``server.py``."""
