"""A user's own batch pipeline: ReadFromBigQuery(DIRECT_READ) of a table, one line per row's `key` into text files.
Stock Beam IO only, no import of the workbench.

    python stock_bigquery_read.py PROJECT:DATASET.TABLE OUTPUT_PREFIX --project P --runner DirectRunner
"""

import sys

import apache_beam as beam
from apache_beam.io.gcp.bigquery import ReadFromBigQuery
from apache_beam.options.pipeline_options import PipelineOptions


def run(argv):
    table, output, beam_args = argv[0], argv[1], argv[2:]
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        _ = (
            pipeline
            | "Read" >> ReadFromBigQuery(table=table, method=ReadFromBigQuery.Method.DIRECT_READ)
            | "Key" >> beam.Map(lambda row: row["key"])
            | "Write" >> beam.io.WriteToText(output)
        )


if __name__ == "__main__":
    run(sys.argv[1:])
