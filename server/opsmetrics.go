package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// opsCollectors are the gauges that alert rules need and the node's other
// metrics lack (deploy/prometheus/alerts.yml): the space left on the file
// system of the data dir, and the lease extension, which bounds the clock
// skew the lease rules tolerate.
func (s *Server) opsCollectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coordd_lease_extension_seconds",
			Help: "The extension a new leader adds to every lease (2 × election timeout by default): leaders' clocks must agree within it.",
		}, func() float64 { return s.cfg.LeaseExtension.Seconds() }),
	}
	if _, _, err := diskSpace(s.cfg.DataDir); err == nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "coordd_data_dir_free_bytes",
				Help: "Bytes left for coordd on the file system that holds the data dir (Raft log, stable store, snapshots).",
			}, func() float64 {
				free, _, err := diskSpace(s.cfg.DataDir)
				if err != nil {
					return -1
				}
				return float64(free)
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "coordd_data_dir_size_bytes",
				Help: "Size of the file system that holds the data dir.",
			}, func() float64 {
				_, total, err := diskSpace(s.cfg.DataDir)
				if err != nil {
					return -1
				}
				return float64(total)
			}))
	}
	return cs
}
