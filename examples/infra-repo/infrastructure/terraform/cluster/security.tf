# One security group shared by the control plane ENIs and the worker nodes.
# Rules are inline so that Terraform owns the complete rule set: a rule added
# or removed out of band in the cloud API shows up as drift on this resource.
resource "aws_security_group" "cluster" {
  name        = "${local.name}-cluster"
  description = "Tidegate ${var.environment} cluster ${local.name}: API, SSH and node-to-node traffic"
  vpc_id      = aws_vpc.this.id

  ingress {
    description = "Kubernetes API"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = concat([var.vpc_cidr], var.admin_cidrs)
  }

  ingress {
    description = "SSH for node configuration"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = concat([var.vpc_cidr], var.admin_cidrs)
  }

  ingress {
    description = "Node-to-node and control-plane-to-kubelet traffic"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "All outbound traffic"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "${local.name}-cluster" })
}
