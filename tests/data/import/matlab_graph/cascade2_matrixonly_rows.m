function [y1] = cascade2_matrixonly_rows(x1)
%CASCADE2_MATRIXONLY_ROWS neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [y1] = cascade2_matrixonly_rows(x1) takes these arguments:
%   x = Qx3 matrix, input #1
% and returns:
%   y = Qx2 matrix, output #1
% where Q is the number of samples.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-2.5621269303974467668e+00;5.6011096713851094009e-01;-5.6447648870533218002e-02];
x1_step1.gain = [1.9917485263426850661e+00;2.2566585701795891516e+00;1.3665027536245386575e+00];
x1_step1.ymin = [-1.0000000000000000000e+00];

% Layer 1
b1 = [4.8572319596900803695e-01;-5.8350465939590079323e-01;-3.9650334235168727126e-01;-1.5344627927542719981e-01;9.4000608527120554925e-02];
IW1_1 = [-1.1293446687498491787e+00 3.8567928544332430452e-01 -5.1977992958485208508e-02;-7.8893592580191462815e-01 8.6648984371427162365e-01 7.6418544996586967866e-01;1.8321785519036085099e-01 -5.1504194853353069128e-01 7.2900739283959237191e-02;1.5424246423149021168e-01 -9.8104022209187558001e-01 1.4194975312028843550e+00;-4.6700929799549295574e-01 -5.3505137818155601437e-01 7.3921855715498185901e-01];

% Layer 2
b2 = [-2.0300294991008716039e-02;-4.4213405876327049882e-01];
IW2_1 = [5.1422277331202059791e-01 -1.7458695006836807972e-01 -4.5186645908572026231e-01;6.1623036492327698532e-01 7.5501898031971970138e-01 -2.1347728151430147570e+00];
LW2_1 = [-9.3127724276194479014e-02 -5.9259930732454491054e-01 -8.6523435221403088846e-01 1.0436659170452848855e+00 -9.5810079627165034566e-01;-1.9100787668416877030e-01 -1.4805023686190199594e+00 -6.6932394831541563995e-01 -7.4427977211438500760e-01 -8.2548972741660131547e-01];

% Output 1
y1_step1.xoffset = [-2.3724563913729657116e+00;-1.5082505730744464323e+00];
y1_step1.gain = [4.7863890948140369597e-01;1.1393267294323212724e+00];
y1_step1.ymin = [-1.0000000000000000000e+00];

% ===== SIMULATION ========

% Dimensions
Q = size(x1,1); % samples

% Input 1
x1 = x1';
xp1 = mapminmax_apply(x1,x1_step1);

% Layer 1
a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*xp1);

% Layer 2
a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1;

% Output 1
y1 = mapminmax_reverse(a2,y1_step1);
y1 = y1';
end

% ===== MODULE FUNCTIONS ========

% Map Minimum and Maximum Input Processing Function
function y = mapminmax_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.ymin);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Map Minimum and Maximum Output Reverse-Processing Function
function x = mapminmax_reverse(y,settings)
  x = bsxfun(@minus,y,settings.ymin);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

