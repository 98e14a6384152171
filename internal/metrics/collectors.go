package metrics

import (
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The collectors below read a node's existing state when Prometheus scrapes: nothing on
// the write path updates a gauge.

// RaftStatus is what the Raft collector reads at each scrape.
type RaftStatus struct {
	// State is hashicorp/raft's state name (Leader, Follower, Candidate, Shutdown).
	State                                         string
	Term, CommitIndex, AppliedIndex, LastLogIndex uint64
}

// RegisterRaft adds the Raft metrics of a node that runs Raft: the write-path
// histograms (Set.Raft) and the state read by status at each scrape.
func (s *Set) RegisterRaft(status func() RaftStatus) error {
	if s == nil {
		return nil
	}
	if err := s.Raft.register(s.reg); err != nil {
		return err
	}
	return s.Register(&raftCollector{status: status})
}

type raftCollector struct{ status func() RaftStatus }

var (
	raftStateDesc   = prometheus.NewDesc("chronicle_raft_state", "1 for this node's current Raft state, 0 for the others.", []string{"state"}, nil)
	raftTermDesc    = prometheus.NewDesc("chronicle_raft_term", "Current Raft term.", nil, nil)
	raftCommitDesc  = prometheus.NewDesc("chronicle_raft_commit_index", "Raft commit index as this node knows it.", nil, nil)
	raftAppliedDesc = prometheus.NewDesc("chronicle_raft_applied_index", "Raft index this node has applied (no-ops and configuration entries included).", nil, nil)
	raftLastDesc    = prometheus.NewDesc("chronicle_raft_last_log_index", "Last index in this node's Raft log.", nil, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftStateDesc, raftTermDesc, raftCommitDesc, raftAppliedDesc, raftLastDesc} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	cur := strings.ToLower(st.State)
	for _, s := range [...]string{"leader", "follower", "candidate", "shutdown"} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(raftStateDesc, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(raftTermDesc, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(raftCommitDesc, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(raftAppliedDesc, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(raftLastDesc, prometheus.GaugeValue, float64(st.LastLogIndex))
}

// LogStatus is where this node's log and read model stand, read at each scrape.
type LogStatus struct {
	// Head is the log's head position as this node knows it (applied, on a Raft node).
	Head uint64
	// View is the read model ("" when the process keeps none); ViewPosition is how far
	// it has projected, ViewLagEvents and ViewLagSeconds how far behind the head it is
	// (in events, and in commit time).
	View           string
	ViewPosition   uint64
	ViewLagEvents  uint64
	ViewLagSeconds float64
	// Publishing: this process runs a NATS publisher; Published is the last position
	// known to be in the stream, Connected whether the NATS connection is up.
	Publishing bool
	Published  uint64
	Connected  bool
	// SSEClients is the number of open /events/stream connections.
	SSEClients int
}

// RegisterLog adds the head, projector, NATS publisher and SSE metrics.
func (s *Set) RegisterLog(status func() LogStatus) error {
	if s == nil {
		return nil
	}
	return s.Register(&logCollector{status: status})
}

type logCollector struct{ status func() LogStatus }

var (
	headDesc       = prometheus.NewDesc("chronicle_head_position", "Log position of the newest event this node knows (applied, on a Raft node).", nil, nil)
	projPosDesc    = prometheus.NewDesc("chronicle_projector_position", "Log position the read model has projected, by view.", []string{"view"}, nil)
	projLagDesc    = prometheus.NewDesc("chronicle_projector_lag_events", "Events the read model is behind the head, by view.", []string{"view"}, nil)
	projLagSecDesc = prometheus.NewDesc("chronicle_projector_lag_seconds", "Commit time between the read model's position and the head, by view.", []string{"view"}, nil)
	natsPosDesc    = prometheus.NewDesc("chronicle_nats_published_position", "Last log position known to be in the NATS stream.", nil, nil)
	natsLagDesc    = prometheus.NewDesc("chronicle_nats_publish_lag_events", "Events the NATS stream is behind this node's head.", nil, nil)
	natsConnDesc   = prometheus.NewDesc("chronicle_nats_connected", "1 while the NATS connection is up.", nil, nil)
	sseDesc        = prometheus.NewDesc("chronicle_sse_clients", "Open /events/stream connections.", nil, nil)
)

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{headDesc, projPosDesc, projLagDesc, projLagSecDesc, natsPosDesc, natsLagDesc, natsConnDesc, sseDesc} {
		ch <- d
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ch <- prometheus.MustNewConstMetric(headDesc, prometheus.GaugeValue, float64(st.Head))
	ch <- prometheus.MustNewConstMetric(sseDesc, prometheus.GaugeValue, float64(st.SSEClients))
	if st.View != "" {
		view := st.View
		if !validLabel(view) {
			view = Other
		}
		ch <- prometheus.MustNewConstMetric(projPosDesc, prometheus.GaugeValue, float64(st.ViewPosition), view)
		ch <- prometheus.MustNewConstMetric(projLagDesc, prometheus.GaugeValue, float64(st.ViewLagEvents), view)
		ch <- prometheus.MustNewConstMetric(projLagSecDesc, prometheus.GaugeValue, st.ViewLagSeconds, view)
	}
	if st.Publishing {
		ch <- prometheus.MustNewConstMetric(natsPosDesc, prometheus.GaugeValue, float64(st.Published))
		ch <- prometheus.MustNewConstMetric(natsLagDesc, prometheus.GaugeValue, float64(lag(st.Head, st.Published)))
		ch <- prometheus.MustNewConstMetric(natsConnDesc, prometheus.GaugeValue, boolValue(st.Connected))
	}
}

func lag(head, pos uint64) uint64 {
	if pos >= head {
		return 0
	}
	return head - pos
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// RegisterPebble adds the metrics of a Pebble database (the state DB), read from
// db.Metrics() at each scrape; name is its db label.
func (s *Set) RegisterPebble(name string, metrics func() *pebble.Metrics) error {
	if s == nil {
		return nil
	}
	return s.Register(newPebbleCollector(name, metrics))
}

type pebbleCollector struct {
	metrics func() *pebble.Metrics
	descs   pebbleDescs
}

type pebbleDescs struct {
	compactions, compactionDebt, compactionsInProgress, flushes              *prometheus.Desc
	l0Files, l0Sublevels, readAmp, tables, diskUsage, memtable               *prometheus.Desc
	cacheHits, cacheMisses, cacheSize, walBytesIn, walBytesWritten, walFsync *prometheus.Desc
}

func newPebbleCollector(name string, metrics func() *pebble.Metrics) *pebbleCollector {
	l := prometheus.Labels{"db": name}
	d := func(n, help string) *prometheus.Desc { return prometheus.NewDesc("chronicle_pebble_"+n, help, nil, l) }
	return &pebbleCollector{metrics: metrics, descs: pebbleDescs{
		compactions:           d("compactions_total", "Compactions completed."),
		compactionDebt:        d("compaction_debt_bytes", "Estimated bytes to compact for the LSM to reach a stable state."),
		compactionsInProgress: d("compactions_in_progress", "Compactions running."),
		flushes:               d("flushes_total", "Memtable flushes completed."),
		l0Files:               d("l0_files", "Sstables in level 0."),
		l0Sublevels:           d("l0_sublevels", "Sublevels of level 0 (read amplification there)."),
		readAmp:               d("read_amplification", "Read amplification: L0 sublevels plus non-empty lower levels."),
		tables:                d("tables", "Live sstables across all levels."),
		diskUsage:             d("disk_usage_bytes", "Disk space the database's files take."),
		memtable:              d("memtable_size_bytes", "Bytes allocated by memtables and large batches."),
		cacheHits:             d("block_cache_hits_total", "Block cache hits."),
		cacheMisses:           d("block_cache_misses_total", "Block cache misses."),
		cacheSize:             d("block_cache_size_bytes", "Bytes in use by the block cache."),
		walBytesIn:            d("wal_bytes_in_total", "Logical bytes written to the WAL."),
		walBytesWritten:       d("wal_bytes_written_total", "Physical bytes written to the WAL (with record headers and padding)."),
		walFsync:              d("wal_fsync_duration_seconds", "WAL fsync latency."),
	}}
}

func (c *pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, x := range []*prometheus.Desc{d.compactions, d.compactionDebt, d.compactionsInProgress, d.flushes, d.l0Files, d.l0Sublevels, d.readAmp,
		d.tables, d.diskUsage, d.memtable, d.cacheHits, d.cacheMisses, d.cacheSize, d.walBytesIn, d.walBytesWritten, d.walFsync} {
		ch <- x
	}
}

func (c *pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics()
	if m == nil {
		return // closed
	}
	d := c.descs
	counter := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v)
	}
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	counter(d.compactions, float64(m.Compact.Count))
	gauge(d.compactionDebt, float64(m.Compact.EstimatedDebt))
	gauge(d.compactionsInProgress, float64(m.Compact.NumInProgress))
	counter(d.flushes, float64(m.Flush.Count))
	gauge(d.l0Files, float64(m.Levels[0].TablesCount))
	gauge(d.l0Sublevels, float64(m.Levels[0].Sublevels))
	gauge(d.readAmp, float64(m.ReadAmp()))
	var tables int64
	for i := range m.Levels {
		tables += m.Levels[i].TablesCount
	}
	gauge(d.tables, float64(tables))
	gauge(d.diskUsage, float64(m.DiskSpaceUsage()))
	gauge(d.memtable, float64(m.MemTable.Size))
	counter(d.cacheHits, float64(m.BlockCache.Hits))
	counter(d.cacheMisses, float64(m.BlockCache.Misses))
	gauge(d.cacheSize, float64(m.BlockCache.Size))
	counter(d.walBytesIn, float64(m.WAL.BytesIn))
	counter(d.walBytesWritten, float64(m.WAL.BytesWritten))
	if h := m.LogWriter.FsyncLatency; h != nil {
		if cm := fsyncHistogram(d.walFsync, h); cm != nil {
			ch <- cm
		}
	}
}

// fsyncHistogram re-emits Pebble's WAL fsync histogram (unnamed, in nanoseconds, 100
// buckets) in seconds, keeping of its buckets only the largest bound at or below each of
// latencyBuckets(): exact counts at exact bounds, a sixth of the series.
func fsyncHistogram(desc *prometheus.Desc, h prometheus.Histogram) prometheus.Metric {
	var pb dto.Metric
	if err := h.Write(&pb); err != nil || pb.Histogram == nil || len(pb.Histogram.Bucket) == 0 {
		return nil
	}
	src := pb.Histogram.Bucket
	buckets := make(map[float64]uint64, 16)
	i := 0
	for _, target := range latencyBuckets() {
		for i+1 < len(src) && src[i+1].GetUpperBound()/1e9 <= target {
			i++
		}
		if b := src[i].GetUpperBound() / 1e9; b <= target {
			buckets[b] = src[i].GetCumulativeCount()
		}
	}
	m, err := prometheus.NewConstHistogram(desc, pb.Histogram.GetSampleCount(), pb.Histogram.GetSampleSum()/1e9, buckets)
	if err != nil {
		return nil
	}
	return m
}
