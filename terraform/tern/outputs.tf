output "service_name" {
  description = "The LoadBalancer Service."
  value       = kubernetes_service_v1.tern.metadata[0].name
}

output "relay_ports" {
  description = "The relay port range the Service publishes (and a NAT must forward)."
  value       = "${var.min_port}-${var.max_port}/udp"
}

output "ice_server_uri" {
  description = "The TURN URI for the ICE configuration."
  value       = "turn:${var.external_ip}:${var.listening_port}?transport=udp"
}

output "ice_server_uris" {
  description = "TURN URIs over UDP and TCP, for each address (IPv6 in brackets); with TLS on, add turns:NAME:<tls_service_port>?transport=tcp with the certificate's DNS name."
  value       = local.ice_server_uris
}
