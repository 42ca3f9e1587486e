"""scalebridge.md: LAMMPS with learned potentials.

- :mod:`scalebridge.md.lammps`: ``run_lammps`` (the one place LAMMPS runs), the
  ``LammpsPotential`` protocol (``DeepMDPotential``, ``SNAPPotential``,
  ``check_potential``), model deviation and candidate export, ``single_points``.
- :mod:`scalebridge.md.properties`: ``PropertiesMaker`` → ``Properties`` artifact.
- :mod:`scalebridge.md.dislocations`: glide-slab 1/2<111> screw/edge dislocations, DXA
  locator, screw-core metrics, ``run_glide`` (one (τ, T, character) job).
- :mod:`scalebridge.md.mobility`: ``MobilityMaker`` → ``DefectStats`` (velocity.csv, drag).
- :mod:`scalebridge.md.deform`: ``DeformMaker`` → ``DefectStats`` (density.csv).
- :mod:`scalebridge.md.cli`: ``scalebridge md properties|dislocation|deform|schema``.
"""
