"""The built-in hardware profiles (one YAML file each), installed as the package deformer_bench.builtin_profiles.

This folder stays at the top of the repository; setup.cfg maps it into the package (package_dir) so that the
profiles ship in the wheel. Read them through deformer_bench.profiles, not by path.
"""
