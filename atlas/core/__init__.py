"""Layer 0, the base of the package: errors, paths, atomic file writes and the generic YAML / override / key-checking
helpers that every configuration schema (the pipeline's and RIM's) is built on. Imports nothing of atlas."""
