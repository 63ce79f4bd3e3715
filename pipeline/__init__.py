"""The streaming pipeline, the code that runs on Dataflow's workers (launching it is workbench.pipeline_run's).

One module per stage, in the order the data flows (pipeline.stream lays them out):

    read -> validate -> dedup -> files
               |              -> bigquery
               +-- dead letters (every stage) --> dead_letters

Every stage that can fail for a single message returns `(main, dead_letters)`: a failure is a tagged output and
a counter, never a log line and never an exception that stops the pipeline. The decisions are pure functions in
pipeline.core; the stage modules are the Beam shell around them.

Nothing uses event-time windows: everything lives in the global window, so events that arrive late or carry
historical timestamps are never dropped behind the watermark.
"""
