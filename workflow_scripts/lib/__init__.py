"""The library the steps, the Snakefile's rules and the tools share: imports only itself."""
