# tern on Kubernetes without hostNetwork: the equivalent of k8s/base (one replica, Recreate,
# a LoadBalancer Service with externalTrafficPolicy Local carrying TURN over UDP, TCP and TLS
# and every relay port with port == targetPort, a NetworkPolicy, an admin Service), for
# Terraform users.

locals {
  labels = {
    "app.kubernetes.io/name"      = "tern"
    "app.kubernetes.io/component" = "turn-relay"
  }
  selector    = { "app.kubernetes.io/name" = "tern" }
  relay_ports = range(var.min_port, var.max_port + 1)
  # TURN over TLS when a certificate Secret is named: one element to iterate over, or none.
  tls = var.tls_secret_name == null ? [] : [var.tls_secret_name]
  tls_config = [
    "tls-listening-port=${var.tls_port}",
    "cert=/etc/tern/tls/tls.crt",
    "pkey=/etc/tern/tls/tls.key",
  ]
  turnserver_conf = join("\n", concat([
    "listening-port=${var.listening_port}",
    "min-port=${var.min_port}",
    "max-port=${var.max_port}",
    "realm=${var.realm}",
    "use-auth-secret",
    "static-auth-secret-file=/etc/tern/secret/static-auth-secret",
    "external-ip=${var.external_ip}",
    "admin-listen=0.0.0.0:9641",
    "drain-timeout=${var.drain_timeout}",
    "relay-threads=${var.relay_threads}",
    "fingerprint",
    "log-format=json",
  ], length(local.tls) > 0 ? local.tls_config : [], var.extra_config, [""]))
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
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
    annotations = merge(
      var.service_annotations,
      var.metallb ? { "metallb.io/loadBalancerIPs" = var.external_ip } : {},
    )
  }
  spec {
    type = "LoadBalancer"
    # Local: no source NAT of peer traffic (TURN permissions are keyed by the peer's IP).
    external_traffic_policy           = "Local"
    allocate_load_balancer_node_ports = false
    # Keep routing to the pod while it drains (its allocations still relay).
    publish_not_ready_addresses = true
    ip_family_policy            = "SingleStack"
    ip_families                 = ["IPv4"]
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
