"""Ray Data's Parquet readers on the tiny run's corpus (6 shards, 210 rows), alternating: the
DataSourceV2 reader (Ray 2.60's default; starts FooterReader actors for every read) and the
classic one. Needs a finished `selfexplain run tiny output_dir=/tmp/tiny1`. Run from the repository root:
    .venv/bin/python docs/throughput-2026-11-29/parquet_reader_ab.py"""
import time
import ray
from selfexplain.config import RayConfig, load_config
from selfexplain.jobs.ray_session import ray_session
from selfexplain.corpus.io import corpus_files
from selfexplain.train.mixture import corpus_sources
c = load_config("tiny", ["output_dir=/tmp/tiny1"])
with ray_session(RayConfig(num_cpus=4)):
    s = corpus_sources(c)[0]
    for i in range(8):
        v2 = i % 2 == 0
        ray.data.DataContext.get_current().use_datasource_v2 = v2
        t0 = time.time()
        m = ray.data.read_parquet(corpus_files(s.corpus), filesystem=s.corpus.fs).materialize(); t2 = time.time()
        print(f"ROUND v2={v2} materialize {t2-t0:.2f} rows {m.count()}", flush=True)
