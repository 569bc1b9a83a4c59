"""The build's stages, one module per step: prepare, build (launch + phases), sanitize,
snapshot, test, output (formats + distribution). Each is a `vmbuild.pipeline.BaseStage`.
"""
