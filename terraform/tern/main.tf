# tern on Kubernetes without hostNetwork: the equivalent of k8s/base (one replica, Recreate,
# a LoadBalancer Service with externalTrafficPolicy Local carrying TURN over UDP, TCP and TLS
# and every relay port with port == targetPort, a NetworkPolicy, an admin Service), for
# Terraform users. With external_ipv6 set, the equivalent of k8s/overlays/metallb-dual-stack:
# a dual-stack Service and tern on both families.

locals {
  labels = {
    "app.kubernetes.io/name"      = "tern"
    "app.kubernetes.io/component" = "turn-relay"
  }
  selector    = { "app.kubernetes.io/name" = "tern" }
  relay_ports = range(var.min_port, var.max_port + 1)
  # The advertised address of each family, IPv4 first: one external-ip line each, and (with
  # metallb) the same list, comma-separated, in the Service's loadBalancerIPs.
  external_ips = var.external_ipv6 == null ? [var.external_ip] : [var.external_ip, var.external_ipv6]
  dual_stack   = length(local.external_ips) == 2
  # Only for dual-stack clusters: on a single-stack one PreferDualStack quietly gives an
  # IPv4-only Service, and MetalLB then refuses the IPv6 address (the families must match).
  ip_family_policy = local.dual_stack ? "PreferDualStack" : "SingleStack"
  ip_families      = local.dual_stack ? ["IPv4", "IPv6"] : ["IPv4"]
  service_annotations = merge(
    var.service_annotations,
    var.metallb ? { "metallb.io/loadBalancerIPs" = join(",", local.external_ips) } : {},
  )
  # Listening and relay sockets on both families (tern keeps them apart with IPV6_V6ONLY).
  dual_stack_config = [
    "listening-ip=0.0.0.0",
    "listening-ip=::",
    "relay-ip=0.0.0.0",
    "relay-ip=::",
  ]
  # Dual-stack: the admin port on [::], which takes IPv4 too (net.ipv6.bindv6only is 0 in a
  # pod), since the kubelet probes the pod's first address, IPv6 on an IPv6-first cluster.
  admin_listen = local.dual_stack ? "[::]:9641" : "0.0.0.0:9641"
  # turn: URIs over UDP and TCP for each address, an IPv6 one in brackets.
  ice_server_uris = flatten([
    for host in concat([var.external_ip], var.external_ipv6 == null ? [] : ["[${var.external_ipv6}]"]) : [
      "turn:${host}:${var.listening_port}?transport=udp",
      "turn:${host}:${var.listening_port}?transport=tcp",
    ]
  ])
  # TURN over TLS when a certificate Secret is named: one element to iterate over, or none.
  tls = var.tls_secret_name == null ? [] : [var.tls_secret_name]
  tls_config = [
    "tls-listening-port=${var.tls_port}",
    "cert=/etc/tern/tls/tls.crt",
    "pkey=/etc/tern/tls/tls.key",
  ]
  # admin-listen is the container's TERN_ADMIN_LISTEN (the image sets that variable, and a
  # variable wins over the file).
  turnserver_conf = join("\n", concat(
    [
      "listening-port=${var.listening_port}",
      "min-port=${var.min_port}",
      "max-port=${var.max_port}",
      "realm=${var.realm}",
      "use-auth-secret",
      "static-auth-secret-file=/etc/tern/secret/static-auth-secret",
      "drain-timeout=${var.drain_timeout}",
      "relay-threads=${var.relay_threads}",
      "fingerprint",
      "log-format=json",
    ],
    [for ip in local.external_ips : "external-ip=${ip}"],
    local.dual_stack ? local.dual_stack_config : [],
    length(local.tls) > 0 ? local.tls_config : [],
    var.extra_config,
    [""],
  ))
}

resource "kubernetes_config_map_v1" "config" {
  metadata {
    name      = "${var.name}-config"
    namespace = var.namespace
    labels    = local.labels
  }
  data = {
    "turnserver.conf" = local.turnserver_conf
  }
}

resource "kubernetes_secret_v1" "auth" {
  metadata {
    name      = "${var.name}-auth"
    namespace = var.namespace
    labels    = local.labels
  }
  data = {
    "static-auth-secret" = var.static_auth_secret
  }
}

resource "kubernetes_deployment_v1" "tern" {
  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }
  spec {
    replicas               = 1
    revision_history_limit = 3
    # Two pods must never hold the same relay ports behind the same address.
    strategy {
      type = "Recreate"
    }
    selector {
      match_labels = local.selector
    }
    template {
      metadata {
        labels = local.labels
        annotations = {
          # Restart on a configuration change (tern reloads secrets live on its own).
          "tern/config-sha256" = sha256(local.turnserver_conf)
        }
      }
      spec {
        automount_service_account_token  = false
        enable_service_links             = false
        termination_grace_period_seconds = var.drain_timeout + 10
        security_context {
          run_as_non_root = true
          run_as_user     = 65532
          run_as_group    = 65532
          fs_group        = 65532
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }
        container {
          name              = "tern"
          image             = var.image
          image_pull_policy = "IfNotPresent"
          args              = ["-c", "/etc/tern/conf/turnserver.conf"]
          env {
            name  = "TERN_ADMIN_LISTEN"
            value = local.admin_listen
          }
          port {
            name           = "turn-udp"
            container_port = var.listening_port
            protocol       = "UDP"
          }
          port {
            name           = "turn-tcp"
            container_port = var.listening_port
            protocol       = "TCP"
          }
          dynamic "port" {
            for_each = local.tls
            content {
              name           = "turn-tls"
              container_port = var.tls_port
              protocol       = "TCP"
            }
          }
          port {
            name           = "admin"
            container_port = 9641
            protocol       = "TCP"
          }
          liveness_probe {
            http_get {
              path = "/healthz"
              port = "admin"
            }
            initial_delay_seconds = 5
            period_seconds        = 10
            timeout_seconds       = 2
            failure_threshold     = 3
          }
          readiness_probe {
            http_get {
              path = "/readyz"
              port = "admin"
            }
            period_seconds    = 5
            timeout_seconds   = 2
            failure_threshold = 2
          }
          resources {
            requests = {
              cpu    = tostring(var.relay_threads)
              memory = "64Mi"
            }
            limits = {
              cpu    = tostring(var.relay_threads * 2)
              memory = "256Mi"
            }
          }
          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true
            run_as_user                = 65532
            run_as_group               = 65532
            capabilities {
              drop = ["ALL"]
            }
          }
          volume_mount {
            name       = "conf"
            mount_path = "/etc/tern/conf"
            read_only  = true
          }
          volume_mount {
            name       = "secret"
            mount_path = "/etc/tern/secret"
            read_only  = true
          }
          # The whole Secret as a directory, never sub_path: the kubelet then swaps the files
          # when the Secret is renewed, and tern (watching cert= and pkey=) reloads them.
          dynamic "volume_mount" {
            for_each = local.tls
            content {
              name       = "tls"
              mount_path = "/etc/tern/tls"
              read_only  = true
            }
          }
        }
        volume {
          name = "conf"
          config_map {
            name = kubernetes_config_map_v1.config.metadata[0].name
          }
        }
        volume {
          name = "secret"
          secret {
            secret_name  = kubernetes_secret_v1.auth.metadata[0].name
            default_mode = "0440"
          }
        }
        dynamic "volume" {
          for_each = local.tls
          content {
            name = "tls"
            secret {
              secret_name  = volume.value
              default_mode = "0440"
            }
          }
        }
      }
    }
  }
}

resource "kubernetes_service_v1" "tern" {
  metadata {
    name        = var.name
    namespace   = var.namespace
    labels      = local.labels
    annotations = local.service_annotations
  }
  spec {
    type = "LoadBalancer"
    # Local: no source NAT of peer traffic (TURN permissions are keyed by the peer's IP).
    external_traffic_policy           = "Local"
    allocate_load_balancer_node_ports = false
    # Keep routing to the pod while it drains (its allocations still relay).
    publish_not_ready_addresses = true
    ip_family_policy            = local.ip_family_policy
    ip_families                 = local.ip_families
    selector                    = local.selector
    port {
      name        = "turn-udp"
      protocol    = "UDP"
      port        = var.listening_port
      target_port = var.listening_port
    }
    port {
      name        = "turn-tcp"
      protocol    = "TCP"
      port        = var.listening_port
      target_port = var.listening_port
    }
    # TURN over TLS; tls_service_port = 443 serves turns:HOST:443 (tern, non-root, keeps 5349).
    dynamic "port" {
      for_each = local.tls
      content {
        name        = "turn-tls"
        protocol    = "TCP"
        port        = var.tls_service_port
        target_port = var.tls_port
      }
    }
    # Every relay port, port == targetPort: the advertised relay port must survive each hop.
    dynamic "port" {
      for_each = local.relay_ports
      content {
        name        = "relay-${port.value}"
        protocol    = "UDP"
        port        = port.value
        target_port = port.value
      }
    }
  }
}

resource "kubernetes_service_v1" "admin" {
  metadata {
    name      = "${var.name}-admin"
    namespace = var.namespace
    labels    = local.labels
  }
  spec {
    type     = "ClusterIP"
    selector = local.selector
    port {
      name        = "admin"
      protocol    = "TCP"
      port        = 9641
      target_port = 9641
    }
  }
}

resource "kubernetes_network_policy_v1" "tern" {
  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }
  spec {
    pod_selector {
      match_labels = local.selector
    }
    policy_types = ["Ingress"]
    ingress {
      ports {
        protocol = "UDP"
        port     = tostring(var.listening_port)
      }
      ports {
        protocol = "TCP"
        port     = tostring(var.listening_port)
      }
      dynamic "ports" {
        for_each = local.tls
        content {
          protocol = "TCP"
          port     = tostring(var.tls_port)
        }
      }
      dynamic "ports" {
        for_each = local.relay_ports
        content {
          protocol = "UDP"
          port     = tostring(ports.value)
        }
      }
    }
    ingress {
      from {
        namespace_selector {}
      }
      ports {
        protocol = "TCP"
        port     = "9641"
      }
    }
  }
}
