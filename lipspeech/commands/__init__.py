"""The command layer, on top of every other: speak, live (and its engine, :mod:`.liveengine`, which the
page's live mode shares), serve (and :mod:`.servelive`), summary, doctor, and :mod:`.toolcli`, which
registers the commands that are not workflow stages. :mod:`lipspeech.cli` (the entry point) collects every
package's commands. Importing this package imports none of them."""
