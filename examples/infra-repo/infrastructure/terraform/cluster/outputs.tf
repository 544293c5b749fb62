output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "HTTPS endpoint of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca" {
  description = "Base64 certificate authority data of the Kubernetes API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "kubeconfig" {
  description = "kubeconfig (YAML) for the cluster with a bearer-token user."
  sensitive   = true
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = aws_eks_cluster.this.name
    preferences     = {}
    clusters = [{
      name = aws_eks_cluster.this.name
      cluster = {
        server                     = aws_eks_cluster.this.endpoint
        certificate-authority-data = aws_eks_cluster.this.certificate_authority[0].data
      }
    }]
    contexts = [{
      name = aws_eks_cluster.this.name
      context = {
        cluster = aws_eks_cluster.this.name
        user    = "tidegate"
      }
    }]
    users = [{
      name = "tidegate"
      user = {
        token = var.kube_token != "" ? var.kube_token : "tidegate-${sha256(aws_eks_cluster.this.arn)}"
      }
    }]
  })
}

output "nodes" {
  description = "Worker nodes for the Ansible inventory: name, private address and inventory groups."
  value = [
    for i, node in aws_instance.node : {
      name    = node.tags["Name"]
      address = node.private_ip
      groups  = i == 0 ? ["nodes", "ingress"] : ["nodes"]
    }
  ]
}

output "vpc_id" {
  description = "ID of the cluster VPC."
  value       = aws_vpc.this.id
}

output "security_group_id" {
  description = "ID of the cluster security group."
  value       = aws_security_group.cluster.id
}
