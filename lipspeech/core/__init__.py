"""The base layer, which every other layer may import and which imports nothing above it: feature stores
(:mod:`.store`), the config schema and its checks (:mod:`.config`), the time axes (:mod:`.timing`), the
stage runtime (:mod:`.shards`: StageError, rejected tables, shard results), ffmpeg I/O (:mod:`.media`),
device / seed / threads / git (:mod:`.runtime`), the stage commands' shared options (:mod:`.stagecli`),
the read audit (:mod:`.audit`), the transcript normalisation (:mod:`.transcript`), live sources
(:mod:`.livemedia`) and the files of installed wheels, found without importing them
(:mod:`.installed`). Importing this package imports none of them."""
