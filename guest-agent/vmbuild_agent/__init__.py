"""vmbuild-agent: runs AWSTOE-style (schema 1.0) component documents; stdlib only, Python >= 3.9."""

__version__ = "0.1.0"
