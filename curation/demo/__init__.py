"""The embedded demo world: a seeded procedural landscape rendered into a static STAC catalog.

`world` is the entry point (`build_demo_catalog`, `cached_demo_catalog`, `demo_regions`); the other
modules render its layout, land cover, sensors, truth rasters and STAC metadata. Nothing in the
production pipeline imports from here except to resolve ``--catalog demo`` and ``demo:REGION`` AOIs.
"""
