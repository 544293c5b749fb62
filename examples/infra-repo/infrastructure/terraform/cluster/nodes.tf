# Explicit node instances: they are what Ansible configures (the managed node
# group exposes no addresses through the EKS API). The first node also runs
# the ingress controller.
resource "aws_instance" "node" {
  count = var.node_count

  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public[count.index % local.subnet_count].id
  vpc_security_group_ids = [aws_security_group.cluster.id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  key_name               = aws_key_pair.nodes.key_name

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  tags = merge(local.tags, {
    Name                                  = "${local.name}-node-${count.index + 1}"
    "kubernetes.io/cluster/${local.name}" = "owned"
    "tidegate.dev/role"                   = count.index == 0 ? "ingress" : "worker"
  })

  depends_on = [aws_route_table_association.public, aws_eks_cluster.this]
}
