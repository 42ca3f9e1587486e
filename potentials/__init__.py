"""scalebridge.potentials"""
