"""scalebridge.dd_coupling"""
