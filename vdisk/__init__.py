"""vdisk: VM disks on Kubernetes (HostPath Provisioner, CDI DataVolumes, KubeVirt snapshots and hotplug)."""

__version__ = "0.1.0"
