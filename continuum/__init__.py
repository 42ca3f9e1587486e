"""scalebridge.continuum"""
