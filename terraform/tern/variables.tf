variable "namespace" {
  description = "Namespace to deploy into (must exist)."
  type        = string
}

variable "name" {
  description = "Name of the Deployment, Services, ConfigMap and Secret."
  type        = string
  default     = "tern"
}

variable "image" {
  description = "The tern image (docker/Dockerfile), ideally pinned by digest."
  type        = string
  default     = "tern:0.1.0"
}

variable "external_ip" {
  description = "The LoadBalancer's IPv4 address: tern advertises it (external-ip) and, with metallb = true, MetalLB assigns it. Written once."
  type        = string

  validation {
    condition     = can(regex("^[0-9.]+$", var.external_ip)) && can(cidrhost("${var.external_ip}/32", 0))
    error_message = "external_ip must be an IPv4 address (the IPv6 one goes in external_ipv6)."
  }
}

variable "external_ipv6" {
  description = "The LoadBalancer's IPv6 address, on a dual-stack cluster: the Service becomes dual-stack (PreferDualStack, IPv4 and IPv6), tern listens and relays on both families and advertises it as its IPv6 external-ip, and with metallb = true MetalLB assigns it too. Written once. null: IPv4 only."
  type        = string
  default     = null

  validation {
    condition     = var.external_ipv6 == null || can(regex(":", var.external_ipv6)) && can(cidrhost("${var.external_ipv6}/128", 0))
    error_message = "external_ipv6 must be an IPv6 address (or null for IPv4 only)."
  }
}

variable "metallb" {
  description = "Annotate the Service with metallb.io/loadBalancerIPs = external_ip (and external_ipv6, comma-separated)."
  type        = bool
  default     = true
}

variable "service_annotations" {
  description = "More annotations for the LoadBalancer Service (cloud load balancers)."
  type        = map(string)
  default     = {}
}

variable "static_auth_secret" {
  description = "The TURN REST API shared secret (static-auth-secret), stored in a Secret."
  type        = string
  sensitive   = true
}

variable "realm" {
  description = "The realm of the long-term credential mechanism."
  type        = string
  default     = "turn.example.org"
}

variable "listening_port" {
  description = "The STUN/TURN port."
  type        = number
  default     = 3478
}

variable "tls_secret_name" {
  description = "The kubernetes.io/tls Secret (tls.crt: the full chain, tls.key) for TURN over TLS, e.g. written by a cert-manager Certificate; mounted as files and reloaded live. null turns TLS off."
  type        = string
  default     = "tern-tls"
}

variable "tls_port" {
  description = "tern's TLS port (tls-listening-port) in the container."
  type        = number
  default     = 5349
}

variable "tls_service_port" {
  description = "The Service's TLS port: 443 serves turns:HOST:443 while tern keeps tls_port (it runs as non-root)."
  type        = number
  default     = 5349
}

# Keep these two equal to k8s/base/turnserver.conf (checked in CI).
variable "min_port" {
  description = "First relay port (min-port). One allocation per relay port."
  type        = number
  default     = 49152
}

variable "max_port" {
  description = "Last relay port (max-port), inclusive."
  type        = number
  default     = 49252

  validation {
    condition     = var.max_port >= var.min_port
    error_message = "max_port must not be below min_port."
  }
}

variable "drain_timeout" {
  description = "Seconds a graceful drain waits for the last allocation; the grace period is 10 s more."
  type        = number
  default     = 3600
}

variable "relay_threads" {
  description = "Worker threads; match the CPU request."
  type        = number
  default     = 1
}

variable "extra_config" {
  description = "More turnserver.conf lines (e.g. allowed-peer-ip=10.42.0.0/16)."
  type        = list(string)
  default     = []
}
