"""The process runtime: launcher, supervisor and workers, socket options."""
