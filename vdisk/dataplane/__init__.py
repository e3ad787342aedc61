"""The data plane: pure data functions with no knowledge of the API (sources, formats, writers).

Entry points: importer.import_http / import_registry / create_blank, used by vdisk.worker.
"""
