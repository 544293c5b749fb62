locals {
  name = var.cluster_name

  tags = merge(
    {
      "tidegate.dev/environment" = var.environment
      "tidegate.dev/cluster"     = var.cluster_name
      "managed-by"               = "tidegate"
    },
    var.tags,
  )

  # Two subnets in two availability zones, /24s at the start of the VPC block.
  subnet_count = 2
  subnet_cidrs = [for i in range(local.subnet_count) : cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), i + 1)]
}

data "aws_availability_zones" "available" {
  state = "available"
}
