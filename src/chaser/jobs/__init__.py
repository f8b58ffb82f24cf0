"""Jobs: durable, retriable command execution (`sandbox.exec`, `pipeline.run`) and
schedules, over the core's sessions and executor; the queue lives in the store.
See docs/jobs.md."""
