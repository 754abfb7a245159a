# setuptools reads everything else from pyproject.toml; cffi_modules has no
# pyproject key, so it is declared here.
from setuptools import setup

setup(cffi_modules=["csrc/build_engine.py:ffibuilder"])
