"""Entry points of vdisk's worker pods (`python -m vdisk.worker importer|uploadserver|cloner`).

Thin, like CDI's cmd/cdi-importer: read the job from env vars and mounted files, call the data plane,
write the termination message. No API access.
"""
