"""Response models: a shared 3D CNN encoder per lesion crop and a time-aware recurrent layer.

Importing this package is light; torch is imported by the submodules that need it.
"""
